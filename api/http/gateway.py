"""The OpenAI-compatible gateway, mounted at /openai/v1: pickwise in the call path.

An OpenAI client whose `base_url` is `http://HOST/openai/v1` sends its chat completions here.
`model: "pickwise/auto"` routes each one (the decision path of `/v1/select`, constraints from the
body's `pickwise` object) and forwards it down the decision's ranking until a model answers; a
registered name or alias is forwarded to that model alone. The upstream's answer comes back as it
was sent (JSON, or its server-sent events as they arrive), with `x-pickwise-model`,
`x-pickwise-attempts` and `x-pickwise-decision-id` (and, routed, `x-pickwise-policy`: whether the
server's routing defaults, PICKWISE_GATEWAY_DEFAULTS, applied), and on a whole JSON answer whose usage
counts its tokens `x-pickwise-cost-usd` (at the registry's list prices; a stream's headers go before its
usage). Errors take OpenAI's shape (`errors.py`). A routed call that was answered keeps its decision
under that id, with the model that answered, the upstream's usage.completion_tokens and the call's cost
(a stream's once it ends whole), for POST /v1/feedback.
"""
from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from pickwise.api.errors import AllAttemptsFailed, NoFeasibleModel, RequestFieldError
from pickwise.api.gateway import Forwarded, routing_prompt
from pickwise.api.gateway.answers import MAX_ANSWERS, answer_count
from pickwise.api.gateway.capabilities import required_capabilities
from pickwise.api.gateway.limits import GatewayLimits, bounded
from pickwise.api.gateway.limits import check_named as check_limited
from pickwise.api.gateway.options import GatewayOptions, from_server, policy, request_options
from pickwise.api.gateway.output_cap import FIELDS as CAP_FIELDS
from pickwise.api.gateway.output_cap import OutputCap, check_named, output_cap
from pickwise.api.gateway.prompt import conversation_tokens, request_tools
from pickwise.api.gateway.route import (
    AUTO_MODEL,
    EMPTY_PROMPT,
    decide_route,
    for_registry,
    named_model,
    select_request,
    served,
)
from pickwise.api.gateway.upstream import (
    UpstreamError,
    UpstreamStream,
    completion_tokens,
    usage_cost_usd,
    usage_of,
)
from pickwise.api.http.auth import check_bearer
from pickwise.api.http.batcher import QueueFull
from pickwise.api.http.errors import ClientGone, HttpError, error_response
from pickwise.api.http.routes import json_response, state, unless_disconnected
from pickwise.api.http.settings import API_KEYS_ENV, GATEWAY_DEFAULTS_ENV
from pickwise.api.schemas import OpenAIErrorBody, OpenAIModel, OpenAIModelList, SelectResponse
from pickwise.api.service import Encoded
from pickwise.registry import ModelSpec

PREFIX = "/openai/v1"
router = APIRouter(prefix=PREFIX, tags=["gateway"])
bearer = HTTPBearer(auto_error=False, description=f"one of the keys in {API_KEYS_ENV} on the server")
log = logging.getLogger("pickwise.gateway")
INLINE_TOKENIZE_CHARS = 20_000  # shorter conversations are counted on the event loop: a thread hop costs more
HEADER_SAFE = "/:@._-+~!$&'()*;=[]"  # model names go in headers as ASCII; the comma separates attempts


def require_client_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """With PICKWISE_API_KEYS set, a request needs one of them as its bearer token: 401 without, 403 wrong."""
    keys = state(request).settings.client_keys
    if not keys:
        return
    check_bearer(credentials, keys, missing="this gateway needs 'Authorization: Bearer <key>' (the SDK's api_key)",
                 wrong="wrong API key", codes=("invalid_api_key", "invalid_api_key"))


def _errors(*statuses: int) -> dict:
    return {status: {"model": OpenAIErrorBody, "description": WHY[status]} for status in statuses}


WHY = {400: "the body is not a JSON object; both max_tokens and max_completion_tokens; or the cap fits no model "
            "it could go to", 401: "no API key (PICKWISE_API_KEYS is set)", 403: "wrong API key",
       404: "unknown model, or one no endpoint serves", 409: "no served model meets the constraints",
       413: "body too large", 422: "a field is wrong; `param` names it",
       429: "overloaded (the predictor's queue or the upstream connections are full), or every model tried "
            "answered 429",
       502: "every upstream attempt failed; `attempts` names them", 503: "the predictor is not loaded yet"}
CHAT_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["model", "messages"], "additionalProperties": True,
        "description": "an OpenAI chat completion request; every field but `pickwise` is forwarded unchanged",
        "properties": {
            "model": {"type": "string", "minLength": 1, "description": f"{AUTO_MODEL!r} to route, or a served model"},
            "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
            "stream": {"type": ["boolean", "null"]},
            **{field: {"type": "integer", "minimum": 1, "description": "each answer's cap: routing goes only to models "
                       "whose context window takes the conversation plus all of it"} for field in CAP_FIELDS},
            "n": {"type": "integer", "minimum": 1, "maximum": MAX_ANSWERS,
                  "description": "answers to write: routing prices n answers' output and the prompt once"},
            "pickwise": {"anyOf": [GatewayOptions.model_json_schema(), {"type": "null"}]},
        }}}}},
}
CHAT_ANSWER = {"description": "the upstream's answer as it sent it: a chat.completion, or its server-sent events",
               "content": {"application/json": {"schema": {"type": "object"}},
                           "text/event-stream": {"schema": {"type": "string"}}}}


def _field_error(field: str, message: str) -> RequestFieldError:
    return RequestFieldError(field, message)


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object (400 when it is not one), its `model`, `messages` and `stream` checked."""
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise ClientGone() from None
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, "invalid_json", f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "the body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _field_error("model", f"required: a model name, or {AUTO_MODEL!r} to route")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _field_error("messages", "required: a non-empty list of message objects")
    # null is unset, as OpenAI reads it (typed clients send every optional field)
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _field_error("stream", "must be true, false or null")
    if body.get("pickwise") is not None and not isinstance(body["pickwise"], dict):
        raise _field_error("pickwise", "must be an object of routing options (or null)")
    return body


def _options(body: dict[str, Any], defaults: dict[str, Any]) -> GatewayOptions:
    """The request's `pickwise` fields over the server's defaults (checked at startup, so an error here
    is the request's, or its mix with them)."""
    try:
        return request_options(defaults, body.get("pickwise"))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in ("pickwise", *first["loc"]))
        raise RequestFieldError(loc, first["msg"]) from None


def _header_name(name: str) -> str:
    return quote(name, safe=HEADER_SAFE)


class Route(NamedTuple):
    """A `pickwise/auto` request's decision, its ranking as specs, and what the decision is kept with."""

    decision: SelectResponse
    models: list[ModelSpec]
    prompt: str  # what the predictor read of the messages
    encoded: Encoded
    answers: int = 1  # the request's n: usage counts all of them, an outcome's length is one answer's

    @property
    def scorable(self) -> bool:
        """Whether the conversation had text: an outcome of the stand-in for none would teach a refit
        about a prompt nobody sent, so no decision is kept for it."""
        return self.prompt != EMPTY_PROMPT


async def _counted(count: Callable[[list], Any], messages: list):
    """`count(messages)`, tokenizing: on the event loop for a short conversation (a thread hop costs
    more), in a worker thread otherwise."""
    if sum(len(str(m.get("content") or "")) + len(str(m.get("tool_calls") or "")) for m in messages) \
            <= INLINE_TOKENIZE_CHARS:
        return count(messages)
    return await run_in_threadpool(count, messages)


async def _route(request: Request, body: dict[str, Any], options: GatewayOptions, cap: OutputCap | None,
                 answers: int, limits: GatewayLimits) -> Route:
    """The route of a `pickwise/auto` request: the select path, prompt from the messages."""
    st = state(request)
    service = st.service
    service.check_ready()
    snapshot = service.registry.refresh()
    window = service.predictor.model.config.max_len - 2  # [CLS] and [SEP]
    prompt, tokens = await _counted(partial(routing_prompt, window=window, tools=request_tools(body)), body["messages"])
    select = select_request(service, snapshot, options, prompt, required_capabilities(body))
    try:
        encoded, truncated = await unless_disconnected(request, st.batcher.submit(select.prompt))
    except QueueFull as exc:
        raise HttpError(429, "overloaded", f"{exc}; retry shortly", headers={"Retry-After": "1"},
                        waiting=exc.waiting, max_queue=exc.limit) from None
    decision, models = await run_in_threadpool(decide_route, service, select, encoded, truncated, snapshot, tokens,
                                               cap, answers, limits)
    return Route(decision, models, select.prompt, encoded, answers)


def _keep(service, route: Route, decision_id: str, spec: ModelSpec, usage: dict | None, seconds: float) -> None:
    """Keep a routed call's decision for feedback by `decision_id`: with the model that answered, one
    answer's length (usage.completion_tokens over the request's n; None when the upstream sent no usage),
    the answer's seconds and what the call cost."""
    tokens = completion_tokens(usage)
    if tokens is not None and route.answers > 1:
        tokens = round(tokens / route.answers)
    service.record_decision(route.prompt, route.decision, route.encoded, decision_id=decision_id,
                            answered_by=spec.name, output_tokens=tokens, latency_ms=seconds * 1000.0,
                            cost_usd=usage_cost_usd(spec, usage))


async def _relay(forwarded: Forwarded, observer, finished: Callable[[dict | None, float], None] | None = None
                 ) -> AsyncIterator[bytes]:
    """The upstream's events as they arrive; a failure midway ends the stream with an error event (never
    another model's text: the caller already has part of this one's answer). When the upstream's stream
    ends whole, `finished(usage, seconds)` gets the last usage sent and the answer's duration; a stream
    cut midway, or left by its caller, is no answer to score."""
    stream: UpstreamStream = forwarded.stream
    model = forwarded.model
    last_usage, started, whole = None, time.perf_counter(), False
    try:
        async for event in stream.events():
            last_usage = usage_of(event) or last_usage  # a running total where a server sends it in every event
            yield event
        whole = True
    except UpstreamError as exc:
        observer.interrupted(model)
        log.warning("stream from %s interrupted: %s", model, exc)
        error = {"error": {"message": f"the upstream stream from {model} failed midway ({exc.outcome}); the answer "
                                      "is incomplete", "type": "upstream_error", "param": None,
                           "code": "stream_interrupted", "model": model}}
        yield b"\n\ndata: " + json.dumps(error).encode() + b"\n\n"
    finally:
        if last_usage:  # counted once, however the stream ended: what the upstream says it billed
            observer.usage(forwarded.spec, last_usage)
        if finished is not None and whole:  # before the await below, which a cancelled request may not get past
            finished(last_usage, stream.first_byte_seconds + time.perf_counter() - started)
        await stream.aclose()


@router.post("/chat/completions", dependencies=[Depends(require_client_key)], openapi_extra=CHAT_BODY,
             summary="OpenAI chat completions, routed (model 'pickwise/auto') or forwarded to a named model",
             responses={200: CHAT_ANSWER, **_errors(400, 401, 403, 404, 409, 413, 422, 429, 502, 503)})
async def chat_completions(request: Request) -> Response:
    st = state(request)
    body = await _body(request)
    decision_id = uuid.uuid4().hex
    stream = bool(body.get("stream", False))
    untried = 0
    route = None
    cap, answers = output_cap(body), answer_count(body)
    limits = st.settings.limits
    if body["model"] == AUTO_MODEL:
        snapshot = st.service.registry.refresh()
        defaults = for_registry(st.settings.gateway_options, snapshot)
        options = bounded(_options(body, defaults), limits, snapshot, served(snapshot))
        applied = policy(defaults, body.get("pickwise"))
        try:
            route = await _route(request, body, options, cap, answers, limits)
        except (NoFeasibleModel, RequestFieldError) as exc:
            raise _blamed(exc, from_server(defaults, body.get("pickwise")), limits) from None
        models, max_attempts = route.models, options.max_attempts
        log.info("gateway decision %s: ranking %s (quality %.3f, cost %.6f USD; %s options %s)", decision_id,
                 ",".join(s.name for s in models), route.decision.quality, route.decision.cost_usd, applied,
                 options.model_dump_json(exclude_defaults=True))
    else:
        applied = None
        if body.get("pickwise"):
            raise RequestFieldError("pickwise", f"routing options apply to model {AUTO_MODEL!r} only; "
                                                f"{body['model']!r} is forwarded as named")
        snapshot = st.service.registry.refresh()
        models, max_attempts = [named_model(snapshot, body["model"])], 1
        check_limited(models[0], limits, snapshot)
        if cap is not None:  # counted only then: a plain pass-through reads no message
            check_named(models[0], cap, await _counted(partial(conversation_tokens, tools=request_tools(body)),
                                                       body["messages"]))
    try:
        forwarded = await unless_disconnected(
            request, st.forwarder.forward(models, body, stream=stream, max_attempts=max_attempts, untried=untried))
    except AllAttemptsFailed as exc:
        log.warning("gateway decision %s: %s", decision_id, exc)
        return _all_failed(exc, _headers(None, exc.attempts, decision_id, applied), request.url.path)
    headers = _headers(forwarded.model, forwarded.attempts, decision_id, applied)
    if forwarded.stream is None:
        reply = forwarded.reply
        cost = usage_cost_usd(forwarded.spec, reply.usage()) if reply.status < 400 else None
        if cost is not None:
            headers["x-pickwise-cost-usd"] = f"{cost:.10f}".rstrip("0").rstrip(".")
        if route is not None and route.scorable and reply.status < 400:  # a client error is no answer to score
            _keep(st.service, route, decision_id, forwarded.spec, reply.usage(), reply.seconds)
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=headers)
    headers["cache-control"] = "no-cache"
    finished = None if route is None or not route.scorable else partial(_keep, st.service, route, decision_id,
                                                                        forwarded.spec)
    return StreamingResponse(_relay(forwarded, st.metrics, finished), status_code=forwarded.stream.status,
                             media_type=forwarded.stream.content_type, headers=headers)


def _all_failed(exc: AllAttemptsFailed, headers: dict[str, str], path: str) -> Response:
    """502 naming every attempt (`x-should-retry: false` when none could succeed if made again: an SDK
    retrying would repeat them all); 429 when every one was rate-limited (429), with the soonest
    Retry-After any upstream gave, so an SDK retries when one of them may answer rather than at once."""
    facts = {"attempts": [{"model": a.model, "outcome": a.outcome, "seconds": round(a.seconds, 4)}
                          for a in exc.attempts]}
    if not exc.attempts or any(a.outcome != "status 429" for a in exc.attempts):
        if exc.attempts and not any(a.retryable for a in exc.attempts):  # the SDK's retries would fail alike
            headers["x-should-retry"] = "false"
        return error_response(502, "upstream_failed", str(exc), headers, path=path, **facts)
    waits = [a.retry_after for a in exc.attempts if a.retry_after is not None]
    if waits:
        headers["Retry-After"] = str(math.ceil(min(waits)))
    return error_response(429, "upstream_rate_limited", f"every model tried is rate-limited now: {exc}", headers,
                          path=path, **facts)


def _blamed(exc: NoFeasibleModel | RequestFieldError, server: dict[str, Any], limits: GatewayLimits) -> Exception:
    """A routed request's 409 or 422, saying which of the server's routing defaults applied (the caller
    sent none of them, and a 409's way out or a 422's field may be one) and, in a 409, its limits."""
    if isinstance(exc, NoFeasibleModel):
        if limits.set_fields():
            exc.add_context(server_limits=limits.set_fields())
        return exc.add_context(server_defaults=server) if server else exc
    name = exc.field.removeprefix("pickwise.")
    if exc.field.startswith("pickwise.") and name in server:
        return RequestFieldError(exc.field, f"{exc.message} (the server's default, {GATEWAY_DEFAULTS_ENV})")
    return exc


def _headers(model: str | None, attempts, decision_id: str, applied: str | None = None) -> dict[str, str]:
    headers = {"x-pickwise-attempts": ",".join(_header_name(a.model) for a in attempts),
               "x-pickwise-decision-id": decision_id}
    if applied is not None:  # a routed call: whose routing options applied
        headers["x-pickwise-policy"] = applied
    if model is not None:
        headers["x-pickwise-model"] = _header_name(model)
    return headers


@router.get("/models", dependencies=[Depends(require_client_key)], response_model=OpenAIModelList,
            summary="the models served here: 'pickwise/auto' and every enabled model with an endpoint",
            responses=_errors(401, 403))
async def list_models(request: Request) -> Response:
    snapshot = state(request).service.registry.refresh()
    data = [OpenAIModel(id=AUTO_MODEL, owned_by="pickwise")]
    limits = state(request).settings.limits
    data += [OpenAIModel(id=s.name, owned_by=s.provider) for s in served(snapshot) if limits.allows(s, snapshot)]
    return json_response(OpenAIModelList(data=data))


@router.get("/models/{model:path}", dependencies=[Depends(require_client_key)], response_model=OpenAIModel,
            summary="one model served here, by name or alias (a name may hold a slash)", responses=_errors(401, 403, 404))
async def get_model(request: Request, model: str) -> Response:
    if model == AUTO_MODEL:
        return json_response(OpenAIModel(id=AUTO_MODEL, owned_by="pickwise"))
    snapshot = state(request).service.registry.refresh()
    spec = named_model(snapshot, model)
    check_limited(spec, state(request).settings.limits, snapshot)
    return json_response(OpenAIModel(id=spec.name, owned_by=spec.provider))
