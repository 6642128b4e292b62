"""A minimal HTTP/1.1 keep-alive client for the load generator, over asyncio streams.

Why not a kept client (httpx, aiohttp) or wrk: the bench runs client and server on the same 2 cores,
so the client's CPU is capacity the server loses; httpx and aiohttp spend several times this client's
CPU per request, and wrk cannot run the open loop (figures: docs/decisions/load-generator.md).

It speaks only what the bench needs and treats anything else as an error, never as a guess:
requests with an optional JSON body; replies framed by Content-Length, chunked, or by the server
closing the connection; keep-alive unless the server says close; a timeout per request. A
connection that failed or timed out is dropped, never reused (its late reply would be read as
the next request's). It opens one connection per request in flight, so the caller bounds the
connections by bounding its concurrency.
"""
from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

LOOPBACK = {"127.0.0.1", "localhost", "::1"}  # the only hosts it talks to: it is a benchmarking tool


def check_loopback(base_url: str) -> None:
    host = urlsplit(base_url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"refusing to load {host!r}: the load generator only targets loopback (127.0.0.1)")


class ProtocolError(Exception):
    """The server's reply is not HTTP/1.x as this client reads it."""


class _ClosedBeforeReply(ProtocolError):
    """The connection ended before the first byte of a reply."""


class LoopbackHttpClient:
    """`await client.request("POST", "/v1/select", {...})` returns the status code."""

    def __init__(self, base_url: str, *, timeout: float = 10.0):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"expected http://HOST:PORT, got {base_url!r}")
        check_loopback(base_url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, body: dict | None = None) -> int:
        """Send one request and read the whole reply; raises OSError, TimeoutError, ProtocolError
        or asyncio.IncompleteReadError on failure."""
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        message = head.encode("latin-1") + data
        conn, reused = self._connection()
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    if conn is None:
                        conn = await asyncio.open_connection(self.host, self.port)
                    conn[1].write(message)
                    try:
                        status, keep = await _read_reply(conn[0])
                        break
                    except _ClosedBeforeReply:
                        if not reused:
                            raise ProtocolError("the server closed the connection without replying") from None
                        # a kept-alive connection the server closed while idle: the request never
                        # reached it, so it is sent once more, on a fresh connection
                        conn[1].close()
                        conn, reused = None, False
        except BaseException:
            if conn is not None:
                conn[1].close()
            raise
        if keep:
            self._idle.append(conn)
        else:
            conn[1].close()
        return status

    def _connection(self):
        """(an idle connection the server has not closed, True), or (None, False)."""
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return (reader, writer), True
            writer.close()
        return None, False

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()

    async def __aenter__(self) -> LoopbackHttpClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the connection may be reused) after reading the reply's whole body."""
    line = await _readline(reader)
    if not line:
        raise _ClosedBeforeReply("the server closed the connection without replying")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {line[:80]!r}")
    status, keep = int(parts[1]), parts[0] == b"HTTP/1.1"
    length, chunked = None, False
    while True:
        line = await _readline(reader)
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ProtocolError("connection closed inside the reply's headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = _number(value, 10, "content-length")
        elif name == "transfer-encoding":
            chunked = value == "chunked"
            if not chunked:
                raise ProtocolError(f"unsupported transfer-encoding {value!r}")
        elif name == "connection":
            keep = value == "keep-alive" or (keep and value != "close")
    if status in (204, 304) or 100 <= status < 200:
        return status, keep
    if chunked:
        while size := _number((await _readline(reader)).split(b";")[0].decode("latin-1"), 16, "chunk size"):
            await reader.readexactly(size + 2)  # the chunk and its CRLF
        while (await _readline(reader)) not in (b"\r\n", b"\n", b""):  # trailers
            pass
    elif length is not None:
        await reader.readexactly(length)
    else:  # framed by the server closing the connection
        await reader.read()
        keep = False
    return status, keep


def _number(text: str, base: int, what: str) -> int:
    try:
        value = int(text.strip(), base)
    except ValueError:
        raise ProtocolError(f"bad {what} {text[:40]!r}") from None
    if value < 0:
        raise ProtocolError(f"bad {what} {text[:40]!r}")
    return value


async def _readline(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError:  # asyncio's stream limit (64 KiB) for one line
        raise ProtocolError("a line of the reply is longer than 64 KiB") from None
