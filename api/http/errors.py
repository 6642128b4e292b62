"""Every error the service returns is JSON `{"error": code, "detail": message, ...}`.

`ServiceError` is what the service layer raises for a request it refuses (the CLI prints the
same message); the handlers here turn it, FastAPI's validation errors and Starlette's HTTP
errors into that one shape, and turn anything unexpected into a logged 500 (always a bug).
"""
from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("pickwise.api")

# Short machine-readable codes for plain HTTP errors (404 from the router, 405, ...).
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "not_ready",
}


class ServiceError(Exception):
    """A refused request: HTTP status, short code, a message for people, and structured extras."""

    def __init__(self, status: int, error: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}


class ClientGone(Exception):
    """The client hung up before its answer was ready; answered with 499 (nginx's "client closed
    request"), which nobody reads but the metrics count, and never logged as a server error."""


def quoted(value: str, limit: int = 80) -> str:
    """A client-given string as an error quotes it: repr'd and cut to `limit` characters, so a
    5,000-character path segment is not echoed back whole."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def unknown_model(name: str) -> ServiceError:
    """404 for a model name: the registry's own message would also name its directory on the
    server, which an unauthenticated GET has no business learning."""
    return ServiceError(404, "not_found", f"unknown model {quoted(name)} (GET /v1/models lists them)")


def field_error(field: str, message: str) -> ServiceError:
    """A 422 naming the request field that is wrong (same shape as pydantic's errors)."""
    loc = ["body", *field.split(".")]
    return ServiceError(422, "validation_error", f"{field}: {message}",
                        errors=[{"loc": loc, "msg": message, "type": "value_error"}])


class ErrorJSONResponse(JSONResponse):
    """Error bodies quote what the client sent, and JSON lets a client send a lone surrogate
    ("\\ud800", as a dict key say) that UTF-8 cannot encode: rendered escaped, not as a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace")


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    return ErrorJSONResponse({"error": error, "detail": detail, **extra}, status_code=status, headers=headers)


def _location(loc) -> str:
    return ".".join(str(part) for part in loc)


def _plain(value: Any) -> Any:
    """JSON-safe copy of a pydantic error's ctx/input values (exceptions become their message)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    detail = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return error_response(422, "validation_error", detail, errors=_plain(errors))


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    return ErrorJSONResponse(_plain(exc.body()), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):  # FastAPI's body parsing says only "error"
        detail = f"request body is not UTF-8 text (byte {cause.start}); send JSON"
    return error_response(exc.status_code, STATUS_CODES.get(exc.status_code, "http_error"), detail,
                          headers=getattr(exc, "headers", None))


async def _client_gone(request: Request, exc: ClientGone) -> JSONResponse:
    return error_response(499, "client_closed_request", "the client disconnected before the answer was ready")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", f"unexpected {type(exc).__name__}; this is a bug, see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
