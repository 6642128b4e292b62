"""What only a Postgres store has to show, on the session's real server: `fit` from it gives the
artifact a SQLite store holding the same rows gives; the URL's password stays out of messages, logs,
stats and the artifact; an unreachable server is a quick, clear error; a dropped connection is
opened again. (The store's shared contract runs on both backends in the other store tests.)"""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest

from pickwise.api.cli.main import main
from pickwise.predictor.artifact import read_meta
from pickwise.registry.decisions import DecisionStore
from pickwise.registry.outcomes import Outcome, OutcomeStore, StoreUnavailable
from pickwise.registry.sql import redact
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
