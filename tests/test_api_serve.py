"""The server as it runs: its log, and its bounds on slow clients (real uvicorn on loopback)."""
from __future__ import annotations

import logging
import subprocess
import sys
import time

from fastapi.testclient import TestClient

from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings


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
