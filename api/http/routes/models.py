"""The registry over HTTP: open reads, token-guarded writes.

Writes need `Authorization: Bearer <token>` matching PICKWISE_ADMIN_TOKEN (compared in
constant time). With no token configured the server refuses every write (403), so a
server started without one can never have its registry changed over the network.
"""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import ClientDisconnect

from pickwise.api.http.auth import check_bearer
from pickwise.api.http.errors import ClientGone, HttpError
from pickwise.api.http.routes import json_response as _json
from pickwise.api.http.routes import state
from pickwise.api.http.settings import ADMIN_TOKEN_ENV
from pickwise.api.schemas import ErrorBody, ModelList, ModelRemoved, ModelWritten, ValidationErrorBody
from pickwise.registry import ModelSpec


class ModelNameConvertor(PathConvertor):
    """A model name in the path: '/' allowed (names hold it), empty not, so `/v1/models/` is no request
    for the model '' but, as on every route, a redirect to the path without the slash (`/v1/models`)."""

    regex = ".+"


register_url_convertor("model_name", ModelNameConvertor())
router = APIRouter(prefix="/v1/models", tags=["models"])
bearer = HTTPBearer(auto_error=False, description=f"the token in {ADMIN_TOKEN_ENV} on the server")

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
JSON_TYPES = ("application/json",)

AUTH_RESPONSES = {
    401: {"model": ErrorBody, "description": "no bearer token"},
    403: {"model": ErrorBody, "description": "wrong token, or writes disabled (no token configured)"},
}


def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    expected = state(request).settings.admin_token
    if not expected:
        raise HttpError(403, "forbidden", f"registry writes are disabled: the server was started without "
                                             f"{ADMIN_TOKEN_ENV}")
    check_bearer(credentials, [expected], missing="registry writes need 'Authorization: Bearer <token>'",
                 wrong="wrong bearer token")


def model_url(name: str) -> str:
    """The model's URL, its name one percent-encoded path segment: a name holding '/' or '..'
    (`../../../etc/passwd`) can never make a client resolve the URL to another path."""
    segment = quote(name, safe="")
    return f"/v1/models/{segment.replace('.', '%2E') if segment in ('.', '..') else segment}"


def _spec_schema() -> dict:
    """ModelSpec's JSON schema with refs into the OpenAPI components (Pricing, Latency, ... are there
    already, through ModelInfo)."""
    schema = ModelSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


ADD_BODY = {
    "requestBody": {
        "required": True,
        "description": "one model entry, as YAML (application/yaml, text/yaml) or JSON",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": _spec_schema()},
        },
    }
}


@router.get("", response_model=ModelList, summary="every registered model (disabled ones too)")
async def list_models(request: Request) -> Response:
    service = state(request).service

    def build() -> ModelList:
        snapshot = service.registry.refresh()
        return ModelList(registry_version=snapshot.version,
                         models=[service.model_info(spec, snapshot) for spec in snapshot.models])

    return _json(await run_in_threadpool(build))


@router.get("/{name:model_name}", response_model=ModelWritten, summary="one model, by name or alias",
            responses={404: {"model": ErrorBody, "description": "unknown model"}})
async def get_model(name: str, request: Request) -> Response:
    info, snapshot = await run_in_threadpool(state(request).service.get_model, name)
    return _json(ModelWritten(registry_version=snapshot.version, model=info))


def _format(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in YAML_TYPES:
        return "yaml"
    if content_type in JSON_TYPES:
        return "json"
    raise HttpError(415, "unsupported_media_type",
                       f"Content-Type {content_type or '(none)'!r} is not supported; send the model as "
                       f"{', '.join(YAML_TYPES[:1] + YAML_TYPES[2:3] + JSON_TYPES)}")


async def _model_text(request: Request) -> str:
    """The body as text: one model entry."""
    try:
        raw = await request.body()
    except ClientDisconnect:  # hung up mid-body: a 499 in the metrics, not a logged 500
        raise ClientGone() from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpError(422, "invalid_model", f"body is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise HttpError(422, "invalid_model", "empty body: send one model entry")
    return text


@router.post("", status_code=201, response_model=ModelWritten, openapi_extra=ADD_BODY,
             dependencies=[Depends(require_admin)], summary="register a model (routable at once)",
             responses={**AUTH_RESPONSES,
                        413: {"model": ErrorBody, "description": "body too large"},
                        409: {"model": ErrorBody, "description": "its name or an alias is already taken, or "
                                                                 "the registry's files on disk do not load"},
                        415: {"model": ErrorBody, "description": "not YAML or JSON"},
                        422: {"model": ValidationErrorBody, "description": "invalid model; every problem listed"}})
async def add_model(request: Request) -> Response:
    fmt = _format(request)
    text = await _model_text(request)
    info, snapshot = await run_in_threadpool(state(request).service.add_model, text, fmt)
    return _json(ModelWritten(registry_version=snapshot.version, model=info), status=201,
                 headers={"Location": model_url(info.name)})


@router.put("/{name:model_name}", response_model=ModelWritten, openapi_extra=ADD_BODY,
            dependencies=[Depends(require_admin)], summary="replace a model (or register it under that name)",
            responses={**AUTH_RESPONSES,
                       201: {"model": ModelWritten, "description": "no model had that name: registered"},
                       404: {"model": ErrorBody, "description": "a name no route matches (e.g. with a line break)"},
                       409: {"model": ErrorBody, "description": "an alias belongs to another model, or the "
                                                                "registry's files on disk do not load"},
                       413: {"model": ErrorBody, "description": "body too large"},
                       415: {"model": ErrorBody, "description": "not YAML or JSON"},
                       422: {"model": ValidationErrorBody, "description": "invalid model, or it is not NAME"}})
async def replace_model(name: str, request: Request) -> Response:
    service = state(request).service
    fmt = _format(request)
    text = await _model_text(request)
    existed = name in service.registry.refresh()
    info, snapshot = await run_in_threadpool(service.add_model, text, fmt, replace=name)
    return _json(ModelWritten(registry_version=snapshot.version, model=info), status=200 if existed else 201,
                 headers=None if existed else {"Location": model_url(info.name)})


@router.delete("/{name:model_name}", response_model=ModelRemoved, dependencies=[Depends(require_admin)],
               summary="remove a model",
               responses={**AUTH_RESPONSES,
                          404: {"model": ErrorBody, "description": "unknown model"},
                          409: {"model": ErrorBody, "description": "cannot remove (e.g. the last model)"}})
async def remove_model(name: str, request: Request) -> Response:
    removed, snapshot = await run_in_threadpool(state(request).service.remove_model, name)
    return _json(ModelRemoved(registry_version=snapshot.version, removed=removed))
