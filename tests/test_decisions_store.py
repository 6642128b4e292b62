"""The decisions table of the outcome store, on real SQLite files and (`new_store`) a real Postgres
server: kept across a restart and between processes sharing the store, bounded by age and count, and
never making the request path wait."""
from __future__ import annotations

import sqlite3
import time

import numpy as np
import pytest

from pickwise.registry.decisions import DecisionStore
from pickwise.registry.outcomes import OutcomeError, OutcomeStore, connect, prompt_sha256

U = np.arange(8, dtype=np.float32) / 8


@pytest.fixture
def path(tmp_path):
    return tmp_path / "outcomes.sqlite"


def _ids(target) -> list[str]:
    db = connect(target)
    try:
        return [row[0] for row in db.execute("SELECT id FROM decisions ORDER BY seq")]
    finally:
        db.close()


def test_a_decision_outlives_its_store_object(new_store):
    path = new_store()
    first = DecisionStore(path)
    decision_id = first.record("What is 2+2?", ["m1"], U, "enc-1", answered_by="m2", output_tokens=17,
                               latency_ms=812.5)
    assert first.get(decision_id).answered_by == "m2"  # known at once, before its batch is written
    first.close()
    restarted = DecisionStore(path)
    found = restarted.get(decision_id)
    assert (found.prompt, found.chosen, found.encoder, found.answered_by, found.output_tokens, found.latency_ms) == (
        "What is 2+2?", ("m1",), "enc-1", "m2", 17, 812.5)
    assert found.prompt_sha256 == prompt_sha256("What is 2+2?")
    np.testing.assert_array_equal(found.u, U)
    assert restarted.get("0" * 32) is None and restarted.get("not an id") is None
    restarted.close()


def test_processes_sharing_the_store_see_each_others_decisions(new_store):
    path = new_store()
    a, b = DecisionStore(path), DecisionStore(path)
    from_a = a.record("p", ["m1", "m3"], U, "enc")
    a.flush()
    assert b.get(from_a).chosen == ("m1", "m3")
    a.close()
    b.close()


def test_a_lookup_never_creates_the_store(path):
    store = DecisionStore(path)
    assert store.get("0" * 32) is None and not path.exists()
    store.close()


def test_decisions_expire_by_age_and_are_pruned(new_store):
    path = new_store()
    now = [1_000_000.0]
    store = DecisionStore(path, keep_s=60, prune_every=1, clock=lambda: now[0])
    old = store.record("old", ["m"], U, "enc")
    store.flush()
    now[0] += 61
    assert store.get(old) is None  # expired, though not deleted yet
    new = store.record("new", ["m"], U, "enc")
    store.flush()
    assert _ids(path) == [new]  # the writer deleted the expired one
    assert store.get(new).prompt == "new"
    store.close()


def test_decisions_are_bounded_by_count(new_store):
    path = new_store()
    store = DecisionStore(path, max_rows=3, prune_every=1)
    ids = []
    for i in range(5):
        ids.append(store.record(f"p{i}", ["m"], U, "enc"))
        store.flush()
    assert _ids(path) == ids[-3:]  # the oldest go first
    store.close()


def test_a_restart_prunes_what_expired_while_it_was_down(new_store):
    path = new_store()
    now = [1_000_000.0]
    store = DecisionStore(path, keep_s=60, clock=lambda: now[0])
    stale = [store.record(f"p{i}", ["m"], U, "enc") for i in range(3)]
    store.close()
    assert _ids(path) == stale
    now[0] += 3600
    later = DecisionStore(path, keep_s=60, clock=lambda: now[0])  # default prune_every: prunes on its first batch
    fresh = later.record("fresh", ["m"], U, "enc")
    later.close()
    assert _ids(path) == [fresh]


def test_without_prompt_text_only_the_hash_and_vector_are_kept(new_store):
    path = new_store()
    store = DecisionStore(path, keep_prompt=False)
    decision_id = store.record("private text", ["m"], U, "enc")
    store.close()
    db = connect(path)
    prompt, sha, vector = db.execute("SELECT prompt, prompt_sha256, prompt_vector FROM decisions").fetchone()
    db.close()
    assert prompt is None and sha == prompt_sha256("private text") and vector is not None
    found = DecisionStore(path).get(decision_id)
    assert found.prompt is None
    np.testing.assert_array_equal(found.u, U)


def test_a_held_store_never_makes_record_wait(path):
    """Another process's long write transaction (an import) holds the file: records return at once,
    those past the queue's bound are not kept (None), and the rest are written once the file is free."""
    OutcomeStore(path).close()  # the file and its tables
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    store = DecisionStore(path, queue_limit=3)
    try:
        started = time.perf_counter()
        ids = [store.record(f"p{i}", ["m"], U, "enc") for i in range(10)]
        assert time.perf_counter() - started < 0.5
        kept = [i for i in ids if i is not None]
        assert 3 <= len(kept) <= 4 and store.dropped == 10 - len(kept)  # the queue, and one batch taken from it
        assert all(store.get(i) is not None for i in kept)  # known here while they wait
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.close()
    assert _ids(path) == kept


def test_a_closed_store_keeps_nothing_more(path):
    store = DecisionStore(path)
    store.close()
    assert store.record("p", ["m"], U, "enc") is None and not path.exists()


def test_an_unusable_store_drops_decisions_and_says_so(tmp_path, caplog):
    path = tmp_path / "not-a-store.sqlite"
    path.write_bytes(b"this is no database " * 100)
    store = DecisionStore(path)
    decision_id = store.record("p", ["m"], U, "enc")
    store.flush()
    assert store.dropped == 1
    with pytest.raises(OutcomeError, match="not a usable outcome store"):  # feedback says so too
        store.get(decision_id)
    assert "decisions cannot be stored" in caplog.text and "not a usable outcome store" in caplog.text
    store.close()  # the writer lives on: close does not hang


def test_a_store_made_before_decisions_kept_their_cost_gains_the_column(new_store, monkeypatch):
    # a store written by older code has no decisions.cost_usd: a newly started server adds it, and keeps
    # the decisions already there
    from pickwise.registry import outcomes

    path = new_store()
    old = DecisionStore(path)
    kept = old.record("What is 2+2?", ["m1"], U, "enc-1", answered_by="m1", output_tokens=3)
    old.close()
    db = connect(path)
    db.execute("ALTER TABLE decisions DROP COLUMN cost_usd")
    db.close()
    monkeypatch.setattr(outcomes, "_schema_done", set())  # as a new process finds it
    store = DecisionStore(path)
    new = store.record("What is 3+3?", ["m1"], U, "enc-1", answered_by="m1", output_tokens=3, cost_usd=0.25)
    store.close()
    restarted = DecisionStore(path)
    assert (restarted.get(kept).output_tokens, restarted.get(kept).cost_usd) == (3, None)
    assert restarted.get(new).cost_usd == 0.25
    restarted.close()
