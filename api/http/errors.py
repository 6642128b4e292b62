"""Every error the HTTP app returns is JSON `{"error": code, "detail": message, ...}`, except under
the OpenAI-compatible gateway (`/openai/`), where it takes OpenAI's shape,
`{"error": {"message", "type", "param", "code", ...}}`, so an OpenAI SDK raises the right exception.

The service raises domain errors (PickwiseError); `STATUS` maps their codes to HTTP statuses,
once. `HttpError` is for refusals only the transport knows (auth, media type, queue and size
limits). The handlers turn both, FastAPI's validation errors and Starlette's HTTP errors into
that one shape, and anything unexpected into a logged 500 (always a bug).
"""
from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from pickwise.api.errors import error_body, error_code
from pickwise.api.http.methods import allowed_methods
from pickwise.errors import PickwiseError

log = logging.getLogger("pickwise.api")

# Short machine-readable codes for plain HTTP errors (404 from the router, 405, ...).
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "not_ready",
}


GATEWAY_PREFIX = "/openai/"
# OpenAI's error `type` by status; SDKs pick the exception class by status, people read the type.
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error",
                500: "server_error", 502: "upstream_error", 503: "service_unavailable", 504: "upstream_error"}


# The status of each domain error code (pickwise.api.errors.ERROR_CODES); 400 for any other.
STATUS = {
    "not_ready": 503,
    "not_found": 404,
    "model_not_found": 404,
    "invalid_parameter": 400,
    "outside_limits": 403,
    "validation_error": 422,
    "infeasible": 409,
    "plan_infeasible": 409,
    "conflict": 409,
    "invalid_model": 422,
    "upstream_failed": 502,
    "overloaded": 429,
    "store_unavailable": 503,  # the outcome store's database cannot be reached now
}
RETRY_AFTER = {"not_ready": "5", "overloaded": "1", "store_unavailable": "5"}


class HttpError(PickwiseError):
    """A request the transport refuses: HTTP status, short code, a message for people, and extras."""

    def __init__(self, status: int, error: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}


class ClientGone(PickwiseError):
    """The client hung up before its answer was ready; answered with 499 (nginx's "client closed
    request"), which nobody reads but the metrics count, and never logged as a server error. One
    rule on every route: a hang-up while the body is read (starlette's ClientDisconnect) is one too."""


def not_found(message: str) -> HttpError:
    return HttpError(404, "not_found", message)


class ErrorJSONResponse(JSONResponse):
    """Error bodies quote what the client sent, and JSON lets a client send a lone surrogate
    ("\\ud800", as a dict key say) that UTF-8 cannot encode: rendered escaped, not as a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace")


def openai_error(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """A `{"error": code, "detail": message, ...facts}` body in OpenAI's shape; the facts stay, inside."""
    facts = {k: v for k, v in body.items() if k not in ("error", "detail")}
    errors = facts.get("errors")
    param = None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict) and isinstance(errors[0].get("loc"), list):
        param = ".".join(str(p) for p in errors[0]["loc"] if p != "body") or None
    param = facts.pop("param", param)
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": body.get("detail", ""), "type": kind, "param": param, "code": body.get("error"),
                      **facts}}


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None, *,
                   path: str = "", **extra) -> JSONResponse:
    """The error response for a request to `path`: OpenAI's shape under the gateway, pickwise's elsewhere."""
    body = {"error": error, "detail": detail, **extra}
    if path.startswith(GATEWAY_PREFIX):
        body = openai_error(status, body)
        if status == 409:  # infeasible: the same request stays infeasible, so an SDK must not retry it
            headers = {**(headers or {}), "x-should-retry": "false"}
    return ErrorJSONResponse(_plain(body), status_code=status, headers=headers)


# JSON tokens that matter to `unreadable_json`: strings (skipped whole), integers, brackets
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|-?[0-9]+|[\[\]{}]')


def unreadable_json(body: bytes, cause: BaseException) -> str | None:
    """What makes valid-looking JSON unreadable, and where: an integer with more digits than Python
    converts (ValueError), or nesting deeper than its recursion limit (RecursionError); None otherwise."""
    limit = sys.get_int_max_str_digits()
    depth = deepest = deepest_at = 0
    for token in _JSON_TOKENS.finditer(body):
        first = token.group()[:1]
        if first in b"[{":
            depth += 1
            if depth > deepest:
                deepest, deepest_at = depth, token.start()
        elif first in b"]}":
            depth -= 1
        elif first != b'"' and isinstance(cause, ValueError) and len(token.group().lstrip(b"-")) > limit:
            return (f"number too large: an integer of {len(token.group().lstrip(b'-')):,} digits at "
                    f"{_line_column(body, token.start())} (at most {limit:,} digits)")
    if isinstance(cause, RecursionError):
        return f"JSON nested too deeply: {deepest:,} levels, the deepest at {_line_column(body, deepest_at)}"
    return None


def _line_column(body: bytes, at: int) -> str:
    line, column = body.count(b"\n", 0, at) + 1, at - body.rfind(b"\n", 0, at)
    return f"line {line}, column {column}"


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


def _message(error: dict, body: Any, content_type: str) -> str:
    """FastAPI's message for one error, made to say what is wrong where it says too little: a JSON
    syntax error ("JSON decode error") or a body left unparsed because it was not sent as JSON."""
    loc, kind = tuple(error.get("loc", ())), error.get("type")
    if kind == "json_invalid" and len(loc) == 2 and isinstance(loc[1], int) and isinstance(body, str):
        before = body[:loc[1]].encode("utf-8", "surrogatepass")
        where = _line_column(before, len(before))
        return f"not valid JSON: {(error.get('ctx') or {}).get('error', 'cannot parse')} at {where}"
    if kind == "model_attributes_type" and loc == ("body",) and isinstance(error.get("input"), bytes):
        return (f"Content-Type {content_type or '(none)'!r} is not JSON, so the body was not read; "
                "send it as JSON with 'Content-Type: application/json'")
    return error.get("msg", "")


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    content_type = request.headers.get("content-type", "")
    errors = [{"loc": list(e.get("loc", ())), "msg": _message(e, exc.body, content_type), "type": e.get("type", "")}
              for e in exc.errors()]
    # a JSON syntax error's loc ends in its character offset, which its message turns into line and column
    detail = "; ".join(f"{_location(e['loc'][:1] if e['type'] == 'json_invalid' else e['loc'])}: {e['msg']}"
                       for e in errors) or "invalid request"
    return error_response(422, "validation_error", detail, path=request.url.path, errors=_plain(errors))


async def _http_refusal(request: Request, exc: HttpError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.detail, exc.headers, path=request.url.path, **exc.extra)


async def _domain_error(request: Request, exc: PickwiseError) -> JSONResponse:
    code = error_code(exc)
    retry = RETRY_AFTER.get(code)
    body = error_body(exc)
    return error_response(STATUS.get(code, 400), body.pop("error"), body.pop("detail"),
                          {"Retry-After": retry} if retry else None, path=request.url.path, **body)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    cause = exc.__cause__
    if isinstance(cause, ClientDisconnect):  # FastAPI's body parsing turns a hang-up mid-body into a 400
        return await _client_gone(request, ClientGone())
    headers = getattr(exc, "headers", None)
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):  # FastAPI's body parsing says only "error"
        detail = f"request body is not UTF-8 text (byte {cause.start}); send JSON"
    if exc.status_code == 405:
        allowed = ", ".join(allowed_methods(request.scope, request.app.router.routes))
        headers = {**(headers or {}), "Allow": allowed}
        detail = f"{request.method} is not allowed on {request.url.path}; it takes {allowed}"
    return error_response(exc.status_code, STATUS_CODES.get(exc.status_code, "http_error"), detail,
                          headers=headers, path=request.url.path)


async def _client_gone(request: Request, exc: ClientGone) -> JSONResponse:
    return error_response(499, "client_closed_request", "the client disconnected before the answer was ready",
                          path=request.url.path)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", f"unexpected {type(exc).__name__}; this is a bug, see the server log",
                          path=request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HttpError, _http_refusal)
    app.add_exception_handler(PickwiseError, _domain_error)
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
