"""HTTP methods the routes do not declare: HEAD served as GET without the body (RFC 9110 9.3.2; monitors
and `curl -I` probe with it, and FastAPI routes list GET only), and the full `Allow` list of a 405.
"""
from __future__ import annotations

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class HeadAsGet:
    """Run a HEAD request as the GET it stands for and send the GET's status and headers (its
    Content-Length included), never its body. Where GET is not served, the GET's 405 is the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def allowed_methods(scope: Scope, routes) -> list[str]:
    """Every method of ORDER some route serves at this request's path (HEAD wherever GET is): what a
    405's Allow header lists. Starlette's own names only the first route that matched the path."""
    def served(method: str) -> bool:
        probe = {**scope, "method": method}
        return any(route.matches(probe)[0] == Match.FULL for route in routes)

    methods = [m for m in ORDER if m != "HEAD" and served(m)]
    return [m for m in ORDER if m in methods or (m == "HEAD" and "GET" in methods)]
