"""What only a Postgres store has to show, on the session's real server: `fit` from it gives the
artifact a SQLite store holding the same rows gives; the URL's password stays out of messages, logs,
stats and the artifact; an unreachable server is a quick, clear error; a dropped connection is
opened again. (The store's shared contract runs on both backends in the other store tests.)"""
from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from pickwise.api.cli.main import main
from pickwise.predictor.artifact import read_meta
from pickwise.registry.decisions import DecisionStore
from pickwise.registry.outcomes import Outcome, OutcomeStore, StoreUnavailable
from pickwise.registry.sql import redact
from tests.gateway_support import dead_url
from tests.store_support import PASSWORD, postgres_schema_url
from tests.test_outcomes_fit import prompts

UNREACHABLE = "postgresql://team:hunter2-pw@127.0.0.1:1/outcomes"  # nothing listens on port 1


def test_redact_drops_the_password_wherever_it_is():
    assert redact("postgresql://u:p%40ss@db.internal:5432/pw?password=x&sslmode=require") == \
        "postgresql://u@db.internal:5432/pw?sslmode=require"
    assert redact("postgres://u@h/db") == "postgres://u@h/db"


def test_fit_from_postgres_gives_the_artifact_sqlite_gives(tmp_path, tiny_predictor, registry_dir, postgres_server,
                                                            monkeypatch, capsys):
    from pickwise.predictor import inference

    monkeypatch.setattr(inference, "load_predictor", lambda *args, **kwargs: tiny_predictor)
    rng = np.random.default_rng(3)
    rows = [{"prompt": p, "model": model, "score": float(rng.integers(0, 2)), "output_tokens": int(rng.integers(5, 900)),
             "timestamp": 1.7e9 + i, "tags": {"i": i}}
            for model in ("gpt-4-1106-preview", "claude-v2") for i, p in enumerate(prompts(150, seed=11))]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    url = postgres_schema_url(postgres_server)
    fits = {}
    for name, store in (("sqlite", str(tmp_path / "s.sqlite")), ("postgres", url), ("postgres-cached", url)):
        if name != "postgres-cached":  # the second fit from Postgres reads the features the first one cached there
            assert main(["outcomes", "import", str(source), "--store", store, "--registry", str(registry_dir)]) == 0
        out = tmp_path / name
        assert main(["fit", "--store", store, "--registry", str(registry_dir), "--out", str(out), "--json"]) == 0
        fits[name] = (out, json.loads(capsys.readouterr().out))
    assert fits["postgres"][1]["prompts_encoded"] == 150 and fits["postgres-cached"][1]["prompts_encoded"] == 0
    vectors = {name: (out / "outcome_vectors.json").read_bytes() for name, (out, _) in fits.items()}
    assert vectors["sqlite"] == vectors["postgres"] == vectors["postgres-cached"]

    def figures(report):
        return {k: v for k, v in report.items() if k not in ("store", "fitted_at", "seconds", "prompts_encoded")}

    assert figures(fits["sqlite"][1]) == figures(fits["postgres"][1]) == figures(fits["postgres-cached"][1])
    recorded = read_meta(fits["postgres"][0])["refit"]["store"]
    assert recorded == redact(url) and recorded.startswith("postgresql://postgres@")
    assert PASSWORD not in (fits["postgres"][0] / "meta.json").read_text()


def test_an_unreachable_server_is_a_quick_clear_error(capsys):
    started = time.perf_counter()
    assert main(["outcomes", "stats", "--store", UNREACHABLE]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the outcome store postgresql://team@127.0.0.1:1/outcomes" in err, err
    assert "hunter2" not in err and time.perf_counter() - started < 10


def test_serve_refuses_to_start_on_an_unreachable_store(registry_dir, tiny_artifact, capsys):
    assert main(["serve", "--registry", str(registry_dir), "--artifact", str(tiny_artifact),
                 "--store", UNREACHABLE, "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to the outcome store postgresql://team@127.0.0.1:1/outcomes" in err and "hunter2" not in err


def test_decisions_for_an_unreachable_server_are_dropped_and_logged_without_the_password(caplog):
    store = DecisionStore(UNREACHABLE)
    with caplog.at_level(logging.ERROR, logger="pickwise.decisions"):
        store.record("p", ["m"])
        store.flush()
    assert store.dropped == 1 and "postgresql://team@127.0.0.1:1/outcomes" in caplog.text
    assert "hunter2" not in caplog.text
    with pytest.raises(StoreUnavailable):  # feedback by id: 503, not a 404 for a decision that may exist
        store.get("0" * 32)
    store.close()


def test_a_dropped_connection_is_opened_again(postgres_server):
    import psycopg

    url = postgres_schema_url(postgres_server)
    with OutcomeStore(url) as store:
        store.add([Outcome(model="m", score=1.0, prompt="a")])
        with psycopg.connect(postgres_server.get_uri(), autocommit=True) as admin:  # what a server restart does
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE pid <> pg_backend_pid() AND datname = current_database()")
        with pytest.raises(StoreUnavailable, match="outcome store postgresql://postgres@"):
            store.add([Outcome(model="m", score=0.0, prompt="b")])  # this one is not stored, and says so
        store.add([Outcome(model="m", score=0.5, prompt="c")])
        assert [o.prompt for o in store.outcomes()] == ["a", "c"]


def _descendants(pid: int) -> list[int]:
    """The processes started under `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found, todo = [], [pid]
    while todo:
        found += (kids := children.get(todo.pop(), []))
        todo += kids
    return found


def test_serve_workers_get_the_store_url_in_a_private_file_not_their_environment(
        registry_dir, tiny_artifact, postgres_server, tmp_path):
    """`serve --workers 2 --store URL`: no worker's environment or command line holds the password; each
    reads the URL from a 0600 file in a 0700 folder, removed when the server stops."""
    url = postgres_schema_url(postgres_server)
    with OutcomeStore(url) as store:
        store.add([Outcome(model="m", score=1.0, prompt="a")])  # what only this store holds
    port = urlsplit(dead_url()).port
    env = {k: v for k, v in os.environ.items() if k != "PICKWISE_OUTCOME_STORE"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "pickwise.api.cli.main", "serve", "--workers", "2", "--port", str(port),
         "--registry", str(registry_dir), "--artifact", str(tiny_artifact), "--store", url, "--precision", "fp32",
         "--torch-threads", "1", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.log").open("w"))
    try:
        deadline = time.monotonic() + 120
        while True:  # both workers answer once each has built its app; then the stats are this store's
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/outcomes/stats", timeout=5)
            except httpx.TransportError:
                time.sleep(0.5)
                continue
            assert answer.status_code == 200 and answer.json()["outcomes"] == 1, answer.text
            break
        workers = _descendants(server.pid)
        environments = {pid: Path(f"/proc/{pid}/environ").read_bytes() for pid in workers}
        assert len(environments) >= 2
        for pid, environ in environments.items():
            assert PASSWORD.encode() not in environ + Path(f"/proc/{pid}/cmdline").read_bytes(), pid
        handed = {dict(v.split(b"=", 1) for v in e.split(b"\0") if b"=" in v).get(b"PICKWISE_STORE_FILE")
                  for e in environments.values()}
        handed.discard(None)
        assert len(handed) == 1
        store_file = Path(handed.pop().decode())
        assert store_file.read_text() == url
        assert stat.S_IMODE(store_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(store_file.parent.stat().st_mode) == 0o700
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert not store_file.parent.exists()
