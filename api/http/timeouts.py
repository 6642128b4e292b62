"""Bounds on how long a client may take to send its request, so slow senders cannot hold
connections (and, mid-body, a task each) open without end: uvicorn bounds only the idle time
between requests (`timeout_keep_alive`).

* the head (request line and headers): `HeaderTimeoutProtocol`, uvicorn's httptools protocol with
  a timer from the connection's start (or the request's first byte) to the end of its headers;
  past it the server answers 408 and closes the connection;
* the body: `BodyReadTimeout`, an ASGI middleware with a deadline from the end of the headers to
  the body's last byte; past it the route's body read fails with 408 and `Connection: close`.
"""
from __future__ import annotations

import asyncio
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pickwise.api.http.errors import error_response
from pickwise.api.http.limits import call_or_answer


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head takes over
    `header_timeout_s` (set per server by `header_timeout_protocol`, or in each worker by the app factory)."""

    header_timeout_s: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined head: close once the running answer is sent
            return
        body = json.dumps({"error": "request_timeout", "detail": f"the request's headers did not arrive within "
                                                                   f"{self.header_timeout_s:g} s"}).encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for one server (uvicorn's `http=`) with its head timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})


class BodyReadTimedOut(HTTPException):
    """Raised from `receive`: an HTTPException, so FastAPI's body parsing re-raises it and the JSON
    error handler answers 408; `Connection: close` makes uvicorn drop the connection after it."""

    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within {seconds:g} s",
                         headers={"Connection": "close"})


class BodyReadTimeout:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body, receive only waits for a disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise BodyReadTimedOut(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await call_or_answer(self.app, scope, receive, send, timed_receive, BodyReadTimedOut,
                             lambda exc: error_response(408, "request_timeout", exc.detail, headers=exc.headers))
