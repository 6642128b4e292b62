"""Compressed request bodies: the service reads none, so one sent with a Content-Encoding (gzip, br, ...)
is refused at once, 415 naming the encoding, rather than parsed as text and called "not UTF-8"."""
from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from pickwise.api.http.errors import error_response


class NoContentEncoding:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for key, value in scope.get("headers", ()):
                encoding = value.decode("latin-1").strip().lower()
                if key == b"content-encoding" and encoding not in ("", "identity"):
                    await error_response(415, "unsupported_media_type",
                                         f"Content-Encoding {encoding!r} is not supported: send the body "
                                         "uncompressed", path=scope.get("path", ""))(scope, receive, send)
                    return
        await self.app(scope, receive, send)
