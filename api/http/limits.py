"""Request body size limit: 413 before reading a body whose Content-Length is too big, and
413 as soon as a streamed (chunked) body passes the limit, so no request can make the
server buffer more than `max_bytes`.
"""
from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pickwise.api.http.errors import error_response


class BodyTooLarge(HTTPException):
    """Raised from `receive` mid-stream. An HTTPException, so FastAPI's body parsing re-raises
    it (instead of turning it into a 400) and the JSON error handler answers 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds the {limit:,}-byte limit")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await error_response(400, "bad_request", "Content-Length is not an integer",
                                         path=scope.get("path", ""))(scope, receive, send)
                    return
        if declared is not None and declared > self.max_bytes:
            await error_response(413, "payload_too_large",
                                 f"request body of {declared:,} bytes exceeds the {self.max_bytes:,}-byte limit",
                                 path=scope.get("path", ""))(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await call_or_answer(
            self.app, scope, receive, send, limited_receive, BodyTooLarge,
            lambda exc: error_response(413, "payload_too_large", exc.detail, path=scope.get("path", "")))


async def call_or_answer(app: ASGIApp, scope: Scope, receive: Receive, send: Send, wrapped_receive: Receive,
                         refusal: type[Exception], answer) -> None:
    """Run `app` reading through `wrapped_receive`; a `refusal` it raises where no handler caught it (e.g.
    outside a route) is answered with `answer(exc)`, unless the response had already started."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, wrapped_receive, tracking_send)
    except refusal as exc:
        if started:
            raise
        await answer(exc)(scope, receive, send)
