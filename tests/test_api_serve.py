"""The server as it runs: its log, and its bounds on slow clients (real uvicorn on loopback)."""
from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time

import httpx
from fastapi.testclient import TestClient

from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings
from pickwise.api.http.telemetry import sample_total
from tests.api_support import live_server


def test_the_service_logs_one_line_when_it_is_ready(registry_dir, tiny_predictor, caplog):
    caplog.set_level(logging.INFO, logger="pickwise.api")
    app = create_app(registry_dir, predictor=lambda: tiny_predictor, settings=ServiceSettings())
    with TestClient(app) as c:
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = c.get("/readyz").json()
        while not any("ready" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "pickwise.api" and "ready" in r.getMessage()]
    assert len(lines) == 1, lines
    for fact in (ready["registry_version"], f"{ready['models']} models", ready["predictor_version"],
                 ready["predictor_precision"]):
        assert fact in lines[0]


def test_pickwise_log_lines_show_at_uvicorns_default_level():
    """uvicorn configures only its own loggers: an INFO line of pickwise.api went nowhere."""
    script = ("import logging.config; from pickwise.api.http.app import log_config; "
              "logging.config.dictConfig(log_config('info')); "
              "logging.getLogger('pickwise.api').info('pickwise ready: here'); "
              "logging.getLogger('pickwise.api').debug('not shown')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "INFO" in done.stderr and "pickwise ready: here" in done.stderr and "not shown" not in done.stderr


def _trickle(url: str, head: bytes, drip: bytes, limit_s: float = 10.0) -> tuple[float, bytes]:
    """Send `head`, then `drip` every 0.2 s until the server closes the connection: (seconds to the
    close, what the server sent); the loop ends by `limit_s` whatever happens."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    answer = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.settimeout(0.2)
        if head:
            sock.sendall(head)
        while time.monotonic() - started < limit_s:
            try:
                if drip:
                    sock.sendall(drip)
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
    return time.monotonic() - started, answer


def test_slow_headers_and_slow_bodies_are_cut_off(registry_dir, tiny_predictor):
    """300 connections sending a header line or a body byte a second were all still open after 30 s."""
    settings = ServiceSettings(header_timeout_s=1.0, body_timeout_s=1.5)
    app = create_app(registry_dir, predictor=tiny_predictor, settings=settings)
    with live_server(app, **settings.uvicorn_options()) as url:
        seconds, answer = _trickle(url, b"POST /v1/select HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n")
        assert 0.9 < seconds < 3.0 and answer.startswith(b"HTTP/1.1 408"), (seconds, answer)
        seconds, answer = _trickle(url, b"", b"")  # connects, sends nothing
        assert 0.9 < seconds < 3.0 and answer.startswith(b"HTTP/1.1 408"), (seconds, answer)
        head = b"POST /v1/select HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
        seconds, answer = _trickle(url, head, b" ")
        assert 1.4 < seconds < 3.5 and answer.startswith(b"HTTP/1.1 408"), (seconds, answer)
        assert b'"error":"request_timeout"' in answer and b"connection: close" in answer.lower()
        with httpx.Client(base_url=url) as c:  # a prompt request is untouched, and the 408 is counted
            assert c.post("/v1/select", json={"prompt": "What is 2+2?"}).status_code == 200
            assert sample_total(c.get("/metrics").text, "pickwise_http_requests_total", status="408") == 1
