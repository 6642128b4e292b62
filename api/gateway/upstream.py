"""Calls to the OpenAI-compatible servers models are served by: one pooled async HTTP client.

One `httpx.AsyncClient` for the whole process reuses connections (keep-alive) to every upstream
and bounds how many are open at once (`max_connections`); a call past the bound waits for a free
connection, at most as long as the endpoint's timeout, then fails with `GatewayBusy`. Both the
HTTP gateway and `pickwise probe run` call through it.

Every attempt ends one of three ways: an answer (`UpstreamReply` holding a JSON object, or an
`UpstreamStream` of server-sent events whose first event has arrived), a client error from the
upstream (a 4xx but 401/403/404/408/429, returned as an `UpstreamReply` to pass back as is) or an
`UpstreamError` saying what went wrong, after which the gateway tries another model. A stream counts
as answered only once its first data event is in (comments before it, keep-alives, are dropped):
until then no byte has gone to the caller, so a failure is still an attempt failure.
"""
from __future__ import annotations

import email.utils
import json
import math
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

from pickwise.api.errors import GatewayBusy
from pickwise.errors import PickwiseError
from pickwise.registry import ModelSpec
from pickwise.registry.estimates import estimate_cost_usd

DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 256
# 408 and 429 say "not now", 5xx "not this server": another model may answer. Any other 4xx is about
# the request itself, which another model would refuse as well, but for these three: they are about the
# model's endpoint (the key the gateway sends, its access, the model's name there), so another model may
# answer, and the caller, whose request is fine, must not read "wrong API key".
RETRYABLE_STATUS = frozenset({408, 429})
ENDPOINT_STATUS = frozenset({401, 403, 404})
MAX_ERROR_BODY = 64 * 1024
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class UpstreamError(PickwiseError):
    """One attempt that did not answer: `kind` (connect, timeout, status, protocol, no_key, empty),
    the upstream's HTTP status for `status`, and whether the same call may succeed if made again
    (`pickwise probe run` retries those); the gateway tries the next model either way."""

    def __init__(self, kind: str, message: str, *, status: int | None = None, retryable: bool = True,
                 retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after  # seconds, from the upstream's Retry-After header

    @property
    def outcome(self) -> str:
        return f"status {self.status}" if self.status is not None else self.kind


@dataclass
class UpstreamReply:
    """A whole answer (or a client error to pass back): status, content type, body bytes as sent."""

    status: int
    content_type: str
    body: bytes
    seconds: float

    def usage(self) -> dict | None:
        """The `usage` object of a JSON answer, if it has one."""
        return usage_of(self.body)


class UpstreamStream:
    """A streamed answer whose first server-sent event has arrived; the rest come from `events()`.

    Events are passed on whole: a stream cut midway never leaves half an event for the caller's parser.
    """

    def __init__(self, response: httpx.Response, first: bytes, rest: AsyncIterator[bytes], seconds: float):
        self.status = response.status_code
        self.content_type = response.headers.get("content-type", "text/event-stream")
        self.first = first
        self.first_byte_seconds = seconds
        self._response = response
        self._rest = rest

    async def events(self) -> AsyncIterator[bytes]:
        """The first event, then the others as they arrive; httpx errors raise as UpstreamError."""
        yield self.first
        try:
            async for event in self._rest:
                yield event
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None

    async def aclose(self) -> None:
        await self._response.aclose()


def usage_of(body: bytes) -> dict | None:
    """`usage` of a JSON answer or of one `data: {...}` event; None when there is none."""
    if b'"usage"' not in body:
        return None
    text = body.strip()
    if text.startswith(b"data:"):
        text = text[5:].strip()
    try:
        usage = json.loads(text).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def usage_count(usage: dict | None, kind: str) -> int | None:
    """`usage[kind]` (prompt_tokens, completion_tokens) when it is a count."""
    value = (usage or {}).get(kind)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def completion_tokens(usage: dict | None) -> int | None:
    """`usage.completion_tokens`, the answer's length as the upstream counts it, when it is a count."""
    return usage_count(usage, "completion_tokens")


def usage_cost_usd(spec: ModelSpec, usage: dict | None) -> float | None:
    """What a call cost at the registry's list prices: the prompt and completion tokens the upstream's
    `usage` counts, plus the per-request fee; None unless it counts both."""
    prompt, completion = usage_count(usage, "prompt_tokens"), usage_count(usage, "completion_tokens")
    if prompt is None or completion is None:
        return None
    return estimate_cost_usd(spec, prompt, completion)


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Whole server-sent events (each with its blank-line terminator) from a byte stream, each as
    soon as its end arrives; what is left at the end of the stream comes last."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        start = 0
        while True:
            end = _EVENT_END.search(buffer, start)
            if end is None:
                break
            yield buffer[start:end.end()]
            start = end.end()
        buffer = buffer[start:]
    if buffer.strip():
        yield buffer


def _transport_error(exc: httpx.HTTPError) -> UpstreamError | GatewayBusy:
    if isinstance(exc, httpx.PoolTimeout):
        return GatewayBusy("every upstream connection is in use; retry shortly")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamError("timeout", f"timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError("connect", "could not connect")
    return UpstreamError("protocol", f"connection failed ({type(exc).__name__})")


class UpstreamClient:
    """The process's one pooled client for every model's endpoint."""

    def __init__(self, *, max_connections: int = DEFAULT_MAX_CONNECTIONS, environ: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._environ = os.environ if environ is None else environ
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport, follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _request(self, spec: ModelSpec, body: bytes) -> httpx.Request:
        endpoint = spec.endpoint
        if endpoint is None:
            raise UpstreamError("no_endpoint", f"model {spec.name!r} has no endpoint", retryable=False)
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if endpoint.api_key_env:
            key = self._environ.get(endpoint.api_key_env)
            if not key:  # the variable's name is configuration, never the key: safe to say
                raise UpstreamError("no_key", f"environment variable {endpoint.api_key_env} is not set")
            headers["authorization"] = f"Bearer {key}"
        seconds = endpoint.timeout_s or DEFAULT_TIMEOUT_S
        # timeout_s bounds connecting and each wait for the upstream's next bytes (the first one
        # included), not a whole streamed answer, which may rightly take minutes
        timeout = httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_S))
        return self._client.build_request("POST", f"{endpoint.base_url}/chat/completions", content=body,
                                          headers=headers, timeout=timeout)

    async def _open(self, spec: ModelSpec, body: bytes) -> httpx.Response:
        request = self._request(spec, body)
        try:
            return await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None

    @staticmethod
    async def _refusal(response: httpx.Response, started: float) -> UpstreamReply:
        """A 4xx/5xx answer: a client error to pass back, or UpstreamError when another model may be tried."""
        try:
            body = await _read_capped(response)
        except httpx.HTTPError:
            body = b""
        status = response.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            raise UpstreamError("status", f"answered {status}", status=status,
                                retry_after=retry_after_s(response.headers.get("retry-after")))
        if status in ENDPOINT_STATUS:  # the same call to the same endpoint would fail the same way
            raise UpstreamError("status", f"answered {status}: check the model's endpoint and key", status=status,
                                retryable=False)
        return UpstreamReply(status, response.headers.get("content-type", "application/json"), body,
                             time.perf_counter() - started)

    async def complete(self, spec: ModelSpec, body: bytes) -> UpstreamReply:
        """One non-streamed call: the whole answer, or a client error to pass back; UpstreamError otherwise."""
        started = time.perf_counter()
        response = await self._open(spec, body)
        try:
            if response.status_code >= 400:
                return await self._refusal(response, started)
            try:
                data = await response.aread()
            except httpx.HTTPError as exc:
                raise _transport_error(exc) from None
            if not 200 <= response.status_code < 300 or not _json_object(data):
                raise UpstreamError("protocol", f"answered {response.status_code} with a body that is not a chat "
                                                "completion (no JSON object)", retryable=False)
            return UpstreamReply(response.status_code, response.headers.get("content-type", "application/json"),
                                 data, time.perf_counter() - started)
        finally:
            await response.aclose()

    async def stream(self, spec: ModelSpec, body: bytes) -> UpstreamStream | UpstreamReply:
        """One streamed call, open once its first event is in (the caller must `aclose` it); a client
        error comes back as an UpstreamReply; UpstreamError otherwise."""
        started = time.perf_counter()
        response = await self._open(spec, body)
        try:
            if response.status_code >= 400:
                reply = await self._refusal(response, started)
                await response.aclose()
                return reply
            kind = response.headers.get("content-type", "")
            if not 200 <= response.status_code < 300 or not kind.startswith("text/event-stream"):
                raise UpstreamError("protocol", f"answered a stream request {response.status_code} with "
                                                f"{kind or 'no content type'}, not server-sent events", retryable=False)
            events = sse_events(response.aiter_bytes())
            try:
                first = await anext(events)
                while not _has_data(first):  # a comment (keep-alive) before the first chunk answers nothing
                    first = await anext(events)
            except StopAsyncIteration:
                raise UpstreamError("empty", "closed the stream before sending anything") from None
            except httpx.HTTPError as exc:
                raise _transport_error(exc) from None
            failed = _error_event(first)
            if failed is not None:  # nothing has gone to the caller yet: another model may answer
                raise UpstreamError("protocol", f"answered the stream with an error event first ({failed})",
                                    retryable=False)
        except BaseException:  # cancelled (the caller left) or failed: release the connection
            await response.aclose()
            raise
        return UpstreamStream(response, first, events, time.perf_counter() - started)


def _error_event(event: bytes) -> str | None:
    """The message of an event whose data is an error object (`{"error": ...}`, as OpenAI-compatible
    servers send one when a stream fails), else None."""
    data = b"\n".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
    try:
        value = json.loads(data)
    except ValueError:
        return None
    if not isinstance(value, dict) or "error" not in value or "choices" in value:
        return None
    error = value["error"]
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:200] if message else "no message"


def _has_data(event: bytes) -> bool:
    """Whether a server-sent event carries data (not only a comment, `: ...`, or other fields)."""
    return any(line.startswith(b"data") for line in event.splitlines())


def retry_after_s(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait (a number of seconds or an HTTP date); None when absent
    or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _json_object(body: bytes) -> bool:
    """Whether a body is one JSON object, as every chat completion is."""
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:  # UnicodeDecodeError included
        return False


async def _read_capped(response: httpx.Response) -> bytes:
    """An error body, at most MAX_ERROR_BODY bytes: an upstream's error page has no business filling memory."""
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= MAX_ERROR_BODY:
            return data[:MAX_ERROR_BODY]
    return data
