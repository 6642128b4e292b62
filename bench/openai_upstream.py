"""A loopback OpenAI-compatible chat server, for the gateway's tests and benchmark.

It speaks what the gateway forwards: `POST /v1/chat/completions` (JSON, or server-sent events with
`stream: true`, a `usage` chunk when `stream_options.include_usage`), behind an expected bearer
key, and `GET /v1/models`. Each model can be told how to behave (`Upstream.behave`): answer, answer
slowly, fail with a status, hang until the caller leaves, cut its stream midway, refuse a max_tokens
over its limit. It records every request it gets, so a test can check what was forwarded, in which
order, and what was cancelled.

    with Upstream(key="sk-test").running() as up:     # up.base_url == "http://127.0.0.1:PORT/v1"
        up.behave("model-a", "status", status=503)
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STARTUP_TIMEOUT_S = 10.0
HANG_LIMIT_S = 30.0  # a hanging model gives up after this, so no test can wait forever


@dataclass
class Behaviour:
    """How one model answers. kind: ok | status (answers `status`) | hang | cut (streams
    `cut_after` events, then drops the connection) | drop (sends headers, then drops the connection) |
    malformed (a whole 200 whose JSON body is broken, streamed or not, as a misconfigured proxy sends) |
    error_event (a stream whose first event is an error object, as servers report a failure once the
    200 and its headers are out)."""

    kind: str = "ok"
    status: int = 200
    delay_s: float = 0.0  # before the answer starts
    event_gap_s: float = 0.0  # between streamed events
    cut_after: int = 2
    usage: bool = True  # a whole answer carries `usage` (some servers leave it out)
    max_tokens: int | None = None  # a larger max_tokens (or max_completion_tokens) is refused with a 400, as servers do
    retry_after: str | None = None  # a `status` answer's Retry-After header, as rate limits send it
    usage_every_event: bool = False  # a stream's usage so far in every event (vLLM's continuous_usage_stats)
    comments_first: int = 0  # SSE comments (keep-alives) a stream sends before its first chunk, as some routers do
    reply_model: str | None = None  # the model a whole answer names (a proxy that falls back to another model)


@dataclass
class Seen:
    """One request the server received."""

    model: str
    body: dict
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class Upstream:
    def __init__(self, key: str | None = "sk-upstream-test", *, answer: Callable[[str, list], str] | None = None,
                 record: bool = True):
        self.key = key
        self.record = record  # a long benchmark need not keep every request
        self.answer = answer or (lambda model, messages: f"Hello from {model}. The answer is (A).")
        self.behaviours: dict[str, Behaviour] = {}
        self.default = Behaviour()
        self.seen: list[Seen] = []
        self.cancelled: list[str] = []
        self.base_url = ""
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"]),
                                     Route("/v1/models", self._models, methods=["GET"])])

    def behave(self, model: str, kind: str = "ok", **options) -> None:
        self.behaviours[model] = Behaviour(kind, **options)

    def calls(self, model: str | None = None) -> list[str]:
        """Models of the requests received, in order (or only those for `model`)."""
        return [s.model for s in self.seen if model is None or s.model == model]

    @contextlib.contextmanager
    def running(self) -> Iterator[Upstream]:
        with serve(self.app) as url:
            self.base_url = url + "/v1"
            yield self

    # ---- handlers ------------------------------------------------------------------------------
    def _refusal(self, status: int, message: str, code: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                       "code": code}}, status_code=status, headers=headers)

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    async def _chat(self, request: Request) -> Response:
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return self._refusal(401, "Incorrect API key provided.", "invalid_api_key")
        body = await request.json()
        model = body.get("model", "")
        if self.record:
            self.seen.append(Seen(model, body, dict(request.headers)))
        how = self.behaviours.get(model, self.default)
        delay = how.delay_s + float(body.get("x_delay_ms") or 0) / 1000
        if delay:
            await asyncio.sleep(delay)
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if how.max_tokens is not None and isinstance(cap, int) and cap > how.max_tokens:
            return self._refusal(400, f"max_tokens is too large: {cap}. This model supports at most "
                                      f"{how.max_tokens} completion tokens.", "invalid_value")
        if how.kind == "status":
            return self._refusal(how.status, f"model {model} answers {how.status} as told", f"told_{how.status}",
                                 None if how.retry_after is None else {"Retry-After": how.retry_after})
        if how.kind == "hang":
            return await self._hang(request, model)
        text = self.answer(model, body.get("messages", []))
        if how.kind == "drop":
            return _Dropped()
        if how.kind == "malformed":
            return Response(b'{"id": "chatcmpl-test", "choices": [', media_type="application/json")
        if body.get("stream"):
            return StreamingResponse(self._events(body, model, text, how), media_type="text/event-stream")
        return JSONResponse(_completion(how.reply_model or model, text, how.usage, _answers(body)))

    async def _hang(self, request: Request, model: str) -> Response:
        deadline = time.monotonic() + HANG_LIMIT_S
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                self.cancelled.append(model)
                return Response(status_code=499)
            await asyncio.sleep(0.02)
        return self._refusal(504, "hung for too long", "hung")

    async def _events(self, body: dict, model: str, text: str, how: Behaviour):
        words = text.split(" ")
        chunks = [{"role": "assistant", "content": ""}] + [{"content": w if i == 0 else " " + w}
                                                            for i, w in enumerate(words)]
        answers = _answers(body)
        for _ in range(how.comments_first):
            yield b": keep-alive\n\n"
            if how.event_gap_s:
                await asyncio.sleep(how.event_gap_s)
        if how.kind == "error_event":
            yield _sse({"error": {"message": f"{model} failed while generating", "type": "server_error"}})
            yield b"data: [DONE]\n\n"
            return
        for i, delta in enumerate(chunks):
            if how.kind == "cut" and i == how.cut_after:
                raise ConnectionResetError("told to cut the stream")  # uvicorn drops the connection mid-body
            for index in range(answers):
                chunk = _chunk(model, delta, None, index)
                if how.usage_every_event:  # cumulative: the words sent so far
                    chunk["usage"] = _usage(" ".join(words[:i]), answers) if i else _usage("", answers)
                yield _sse(chunk)
            if how.event_gap_s:
                await asyncio.sleep(how.event_gap_s)
        for index in range(answers):
            yield _sse(_chunk(model, {}, "stop", index))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = _chunk(model, None, None)
            usage["choices"], usage["usage"] = [], _usage(text, answers)
            yield _sse(usage)
        yield b"data: [DONE]\n\n"


class _Dropped(Response):
    """Sends the headers of a 200 with a body length, then fails: the connection closes short of the body."""

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b'{"id": "cut', "more_body": True})
        raise ConnectionResetError("told to drop the connection")


def _answers(body: dict) -> int:
    """`n`, the answers asked for (1 when absent), as an OpenAI server reads it."""
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _usage(text: str, answers: int = 1) -> dict:
    completion = len(text.split()) * answers  # every answer's tokens, as OpenAI bills n answers
    return {"prompt_tokens": 12, "completion_tokens": completion, "total_tokens": 12 + completion}


def _completion(model: str, text: str, usage: bool = True, answers: int = 1) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        for i in range(answers)],
            **({"usage": _usage(text, answers)} if usage else {})}


def _chunk(model: str, delta: dict | None, finish: str | None, index: int = 0) -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [] if delta is None else [{"index": index, "delta": delta, "finish_reason": finish}]}


def _sse(data: dict) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


@contextlib.contextmanager
def serve(app, **config) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config))
    thread = threading.Thread(target=server.run, name="uvicorn-loopback", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the loopback server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    """`python -m bench.openai_upstream --port P`: the server alone (the gateway bench runs it apart from
    pickwise). A request's `x_delay_ms` field, which the gateway forwards untouched, delays its answer."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", default=None, help="the bearer key it expects (default: none)")
    args = parser.parse_args()
    uvicorn.run(Upstream(key=args.key, record=False).app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
