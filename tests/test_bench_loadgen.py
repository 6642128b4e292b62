"""The bench's load generator and its HTTP client, against real sockets on 127.0.0.1.

The API figures in the README rest on this client reading every reply correctly, so each framing
the server may use (Content-Length, chunked, close-delimited) and each failure (timeout, garbage,
a server closing mid-reply) is exercised against a small asyncio server that answers scripted bytes.
"""
from __future__ import annotations

import asyncio

import pytest

from bench.http_client import LoopbackHttpClient, ProtocolError, check_loopback  # noqa: E402
from bench.loadgen import closed_loop, open_loop  # noqa: E402

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


class ScriptedServer:
    """Answers the n-th request it reads (n from 1) with `reply(n)`: bytes, None (never answer), or
    (bytes, True) to close the connection after them; counts connections and request bodies."""

    def __init__(self, reply):
        self.reply, self.connections, self.bodies = reply, 0, []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                self.bodies.append(await reader.readexactly(length))
                answer = self.reply(len(self.bodies))
                if answer is None:
                    await asyncio.sleep(3600)
                answer, close = answer if isinstance(answer, tuple) else (answer, False)
                writer.write(answer)
                await writer.drain()
                if close:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def run(coro):
    return asyncio.run(coro)


def test_keep_alive_reuses_one_connection_and_sends_the_json_body():
    async def go():
        async with ScriptedServer(lambda n: OK) as srv:
            async with LoopbackHttpClient(srv.url) as client:
                statuses = [await client.request("POST", "/v1/select", {"prompt": f"p{i}"}) for i in range(5)]
            return statuses, srv.connections, srv.bodies

    statuses, connections, bodies = run(go())
    assert statuses == [200] * 5
    assert connections == 1
    assert bodies[3] == b'{"prompt": "p3"}'


@pytest.mark.parametrize("reply, status", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n", 200),
    (b"HTTP/1.1 422 Unprocessable\r\ncontent-length: 2\r\n\r\n{}", 422),
    ((b"HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", True), 429),
    ((b"HTTP/1.0 200 OK\r\n\r\nbody until close", True), 200),
    ((OK, True), 200),  # an idle keep-alive connection the server closed is not reused
])
def test_every_framing_is_read_whole_and_the_next_request_still_works(reply, status):
    async def go():
        async with ScriptedServer(lambda n: reply if n == 1 else OK) as srv:
            async with LoopbackHttpClient(srv.url) as client:
                return [await client.request("POST", "/x", {}), await client.request("GET", "/y")]

    assert run(go()) == [status, 200]


@pytest.mark.parametrize("reply, error", [
    ((b"garbage\r\n\r\n", True), ProtocolError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", ProtocolError),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", ProtocolError),
    ((b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", True), asyncio.IncompleteReadError),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * 70_000 + b"\r\n\r\n", ProtocolError),
])
def test_a_bad_reply_is_an_error_not_a_guess(reply, error):
    async def go():
        async with ScriptedServer(lambda n: reply) as srv:
            async with LoopbackHttpClient(srv.url) as client:
                await client.request("POST", "/x", {})

    with pytest.raises(error):
        run(go())


def test_a_timed_out_connection_is_dropped_not_reused():
    async def go():
        async with ScriptedServer(lambda n: None if n == 1 else OK) as srv:
            async with LoopbackHttpClient(srv.url, timeout=0.2) as client:
                with pytest.raises(TimeoutError):
                    await client.request("POST", "/slow", {})
                status = await client.request("POST", "/x", {})
            return status, srv.connections

    assert run(go()) == (200, 2)


def test_closed_loop_stops_at_its_count_and_records_statuses_and_errors():
    async def go():
        async with ScriptedServer(lambda n: OK if n % 4 else b"HTTP/1.1 503 X\r\nContent-Length: 0\r\n\r\n") as srv:
            return await closed_loop(srv.url, "/v1/select", lambda i: {"i": i}, concurrency=3, total=20,
                                     max_seconds=30)

    result = run(go())
    assert result.requests == 20
    assert result.statuses == {"200": 15, "503": 5}
    assert result.errors == 5


def test_open_loop_sends_rate_times_seconds_and_counts_failures_by_name():
    async def go():
        async with ScriptedServer(lambda n: OK if n % 2 else (b"junk\r\n\r\n", True)) as srv:
            return await open_loop(srv.url, "/v1/select", lambda i: {"i": i}, rate=200, seconds=0.1)

    result = run(go())
    assert result.requests == 20
    assert result.statuses == {"200": 10, "ProtocolError": 10}


def test_only_loopback_is_loaded():
    with pytest.raises(ValueError, match="loopback"):
        check_loopback("http://10.1.2.3:8000")
    with pytest.raises(ValueError, match="loopback"):
        LoopbackHttpClient("http://10.1.2.3:8000")
    with pytest.raises(ValueError, match="HOST:PORT"):
        LoopbackHttpClient("http://127.0.0.1")
