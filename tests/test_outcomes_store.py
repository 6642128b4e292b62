"""The outcome store: import/export round trips, bad rows named, atomic batches, crash safety, on
both backends (`new_store`: a SQLite file, then a schema on a real Postgres server)."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from pickwise.api.cli.main import main
from pickwise.registry.outcomes import (
    Outcome,
    OutcomeStore,
    connect,
    parse_file,
    prompt_sha256,
    store_exists,
    utc_timestamp,
    write_records,
)
from pickwise.registry.sql import is_url
from tests.api_support import registry_with_alias

ROWS = [
    {"prompt": "What is 2+2?", "model": "gpt4", "score": 1, "cost_usd": 0.0021, "latency_ms": 812.5,
     "output_tokens": 12, "timestamp": "2026-11-30T10:00:00Z", "decision_id": "d1", "tags": {"team": "a", "n": [1, 2]}},
    {"prompt": "Name a prime, \"quoted\", with a comma", "model": "Llama-2-7b-hf", "score": 0.25,
     "timestamp": "2026-12-01T08:30:00.123456+02:00"},
    {"prompt": "Résumé: write one line.\nTwo lines.", "model": "claude-v2", "score": 0.0, "timestamp": 1764547200},
]


@pytest.fixture
def aliased(tmp_path):
    return registry_with_alias(tmp_path / "registry", "gpt-4-1106-preview", "gpt4")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(store_path):
    with OutcomeStore(store_path) as store:
        return list(store.outcomes())


def test_round_trip_every_format(tmp_path, aliased, capsys, new_store):
    source = _jsonl(tmp_path / "in.jsonl", ROWS)
    store = new_store("a")
    assert main(["outcomes", "import", str(source), "--store", str(store), "--registry", str(aliased)]) == 0
    stored = _rows(store)
    assert [o.model for o in stored] == ["claude-v2", "gpt-4-1106-preview", "Llama-2-7b-hf"]  # alias resolved, by time
    assert stored[1].tags == {"team": "a", "n": [1, 2]} and stored[1].output_tokens == 12
    assert stored[2].timestamp == "2026-12-01T06:30:00.123456Z"
    assert stored[0].timestamp == utc_timestamp(1764547200)
    for suffix in ("jsonl", "csv", "parquet"):
        first, second = tmp_path / f"out1.{suffix}", tmp_path / f"out2.{suffix}"
        assert main(["outcomes", "export", "--store", str(store), "--output", str(first)]) == 0
        copy = new_store(f"copy-{suffix}")
        assert main(["outcomes", "import", str(first), "--store", str(copy), "--registry", str(aliased)]) == 0
        assert _rows(copy) == stored
        assert main(["outcomes", "export", "--store", str(copy), "--output", str(second)]) == 0
        assert first.read_bytes() == second.read_bytes()


def test_bad_rows_are_named_and_nothing_is_stored(tmp_path, aliased, capsys, new_store):
    rows = [json.dumps(ROWS[0]), "{not json", json.dumps({"prompt": "x", "model": "nobody", "score": 1}),
            json.dumps({"prompt": "x", "model": "gpt4", "score": 1.5}), "",
            json.dumps({"prompt": "x", "model": "gpt4", "score": 1, "colour": "red"}),
            json.dumps({"prompt": "x", "model": "gpt4", "score": True}),
            json.dumps({"prompt": "x", "model": "gpt4"}),
            json.dumps({"prompt": "x", "model": "gpt4", "score": 1, "output_tokens": 10**9}),
            '{"prompt": "x", "model": "gpt4", "score": 1, "score": 0}', json.dumps(ROWS[1])]  # was stored as 0
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(rows) + "\n")
    store = new_store()
    code = main(["outcomes", "import", str(source), "--store", str(store), "--registry", str(aliased)])
    err = capsys.readouterr().err
    assert code == 2
    for needle in ("line 2: not JSON", "line 3: field 'model': unknown model 'nobody'", "line 4: field 'score'",
                   "line 6: unknown field(s) 'colour'", "line 7: field 'score': expected a number",
                   "line 8: missing field(s) 'score'",
                   "line 9: field 'output_tokens': 1,000,000,000 is above gpt-4-1106-preview's max_output_tokens",
                   "line 10: key 'score' appears twice in one JSON object"):
        assert needle in err, needle
    assert "line 1:" not in err and "line 11" not in err and "8 bad row(s), nothing stored" in err
    assert not store_exists(store) or _rows(store) == []
    assert main(["outcomes", "import", str(source), "--store", str(store), "--registry", str(aliased),
                 "--skip-bad"]) == 0
    assert len(_rows(store)) == 2


def test_skipping_many_bad_rows_lists_the_first_fifty(tmp_path, aliased, new_store, capsys):
    source = tmp_path / "many.jsonl"
    source.write_text("\n".join([json.dumps(ROWS[0])] + ['{"prompt": "x", "model": "nobody", "score": 1}'] * 120) + "\n")
    store = new_store()
    assert main(["outcomes", "import", str(source), "--store", str(store), "--registry", str(aliased),
                 "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert err.count("import: skipped") == 51 and "... and 70 more" in err and "120 bad rows skipped" in err


def test_csv_bad_rows_name_their_line(tmp_path, aliased, capsys):
    source = tmp_path / "in.csv"
    source.write_text('prompt,model,score,tags\n"a, b",gpt4,1,\n"multi\nline",gpt4,2,\nc,gpt4,0.5,{oops\n'
                      'd,gpt4,0.5,"{""k"": 1}"\n')
    good, bad = parse_file(source, lambda m: {"gpt4": "gpt-4-1106-preview"}[m])
    assert [o.prompt for o in good] == ["a, b", "d"] and good[1].tags == {"k": 1}
    assert bad[0].startswith("line 4: field 'score'") and bad[1].startswith("line 5: field 'tags'")


def test_a_quote_left_open_is_named_where_it_starts(tmp_path):
    from pickwise.registry.outcomes import OutcomeError

    source = tmp_path / "in.csv"
    source.write_text('prompt,model,score\na,gpt4,1\n"b,gpt4,1\nc,gpt4,0.5\nd,gpt4,0.5\n')
    with pytest.raises(OutcomeError, match=r"in.csv: line 3: a quoted cell is never closed"):
        parse_file(source, lambda m: "gpt-4-1106-preview")
    closed = tmp_path / "closed.csv"  # a closed multi-line cell on the last row is a good row
    closed.write_text('prompt,model,score\na,gpt4,1\n"b\nc",gpt4,1\n')
    good, bad = parse_file(closed, lambda m: "gpt-4-1106-preview")
    assert [o.prompt for o in good] == ["a", "b\nc"] and not bad


def test_a_file_that_is_not_parquet_is_refused_by_name(tmp_path):
    from pickwise.registry.outcomes import OutcomeError

    source = tmp_path / "in.parquet"
    source.write_bytes(b"PAR1 not really")
    with pytest.raises(OutcomeError, match=r"in.parquet: not a readable parquet file"):
        parse_file(source, lambda m: "gpt-4-1106-preview")


def test_stats_counts_per_model_and_day(tmp_path, aliased, capsys, new_store):
    store = new_store()
    main(["outcomes", "import", str(_jsonl(tmp_path / "in.jsonl", ROWS)), "--store", str(store),
          "--registry", str(aliased)])
    capsys.readouterr()
    assert main(["outcomes", "stats", "--store", str(store), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["outcomes"] == 3 and stats["prompts"] == 3
    assert "s3cret" not in json.dumps(stats) and (stats["store"].startswith("postgresql://") == is_url(store))
    assert {r["model"]: r["outcomes"] for r in stats["per_model"]} == {
        "gpt-4-1106-preview": 1, "Llama-2-7b-hf": 1, "claude-v2": 1}
    assert [d["day"] for d in stats["per_day"]] == ["2025-12-01", "2026-11-30", "2026-12-01"]
    # spend: summed over the rows that record a cost, and how many do
    assert {r["model"]: (r["cost_usd"], r["costed"]) for r in stats["per_model"]} == {
        "gpt-4-1106-preview": (0.0021, 1), "Llama-2-7b-hf": (None, 0), "claude-v2": (None, 0)}
    assert [(d["cost_usd"], d["costed"]) for d in stats["per_day"]] == [(None, 0), (0.0021, 1), (None, 0)]
    assert main(["outcomes", "stats", "--store", str(store)]) == 0
    table = capsys.readouterr().out
    assert "COST USD    COSTED" in table and "0.002100         1" in table and "(COSTED of them)" in table
    assert main(["outcomes", "stats", "--store", str(tmp_path / "none.sqlite")]) == 2


def test_hashed_rows_keep_no_text(new_store):
    target = new_store()
    with OutcomeStore(target) as store:
        store.add([Outcome(model="m", score=1.0, prompt_sha256=prompt_sha256("secret"), prompt_vector=(0.5, -1.0),
                           vector_encoder="enc")])
    db = connect(target)
    assert db.execute("SELECT prompt, prompt_sha256 FROM outcomes").fetchall() == [(None, prompt_sha256("secret"))]
    db.close()
    assert _rows(target)[0].prompt_vector == (0.5, -1.0)


def test_feedback_on_a_decision_replaces_the_earlier_one(new_store):
    target = new_store()
    with OutcomeStore(target) as store:
        store.add([Outcome(model="m", score=1.0, prompt="p", decision_id="d1")])  # an import keeps every row
        assert store.add_feedback(Outcome(model="m", score=0.0, prompt="p", decision_id="d1")) is True
        assert store.add_feedback(Outcome(model="n", score=0.5, prompt="p", decision_id="d1")) is False
        assert store.add_feedback(Outcome(model="m", score=0.75, prompt="p", decision_id="d2")) is False
        with pytest.raises(ValueError, match="decision_id"):
            store.add_feedback(Outcome(model="m", score=1.0, prompt="p"))
    assert sorted((o.decision_id, o.model, o.score) for o in _rows(target)) == [
        ("d1", "m", 0.0), ("d1", "n", 0.5), ("d2", "m", 0.75)]


def test_a_failing_batch_stores_nothing(new_store):
    target = new_store()
    with OutcomeStore(target) as store:
        store.add([Outcome(model="m", score=0.5, prompt="a")])
        with pytest.raises(store._db.errors) as failed:  # the CHECK on score rejects the batch's second row
            store.add([Outcome(model="m", score=1.0, prompt="b"), _unchecked(score=7.0)])
        assert "check" in str(failed.value).lower()
        assert len(store) == 1
        if not is_url(target):
            assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _unchecked(score: float) -> Outcome:
    o = Outcome(model="m", score=0.0, prompt="z")
    object.__setattr__(o, "score", score)
    return o


CHILD = textwrap.dedent("""
    import sys
    from pickwise.registry.outcomes import Outcome, OutcomeStore
    store = OutcomeStore(sys.argv[1])
    batch, done = int(sys.argv[2]), 0
    while True:
        store.add([Outcome(model="m", score=(done + i) % 2, prompt=f"prompt {done + i}") for i in range(batch)])
        done += batch
        print(done, flush=True)
""")


def test_a_crash_mid_import_loses_no_committed_outcome(new_store):
    path, batch = new_store(), 500
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(batch)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ})
    try:
        committed = 0
        for _ in range(6):
            committed = int(child.stdout.readline())
    finally:
        os.kill(child.pid, signal.SIGKILL)  # mid-way through the next batch, most likely
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    if not is_url(path):
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
    rows = _rows(path)
    assert len(rows) >= committed and len(rows) % batch == 0  # every committed batch whole, no partial one
    assert {o.prompt for o in rows} == {f"prompt {i}" for i in range(len(rows))}


def test_timestamps_sort_as_times():
    stamps = ["2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+02:00", 1767225599.25]
    assert sorted(map(utc_timestamp, stamps)) == [
        "2025-12-31T23:00:00.000000Z", "2025-12-31T23:59:59.250000Z", "2026-01-01T00:00:00.000000Z",
        "2026-01-01T00:00:00.500000Z"]
    with pytest.raises(ValueError):
        utc_timestamp("yesterday")
    # many loggers write epoch milliseconds: say so rather than "year 57887 is out of range"
    with pytest.raises(ValueError, match=r"1764583200000 is after the year 9999 in epoch seconds: epoch "
                                         r"milliseconds\? give seconds \(1764583200\.0\)"):
        utc_timestamp(1764583200000)


@contextlib.contextmanager
def statements_sent(store: OutcomeStore, tmp_path):
    """A list, filled when the block ends, of what the store's real connection sent to its database: on
    SQLite each statement (its trace callback), on Postgres each round trip (libpq's protocol trace:
    one ReadyForQuery from the server ends each). Reaches into the store for its driver connection."""
    conn, sent = store._db._conn, []
    if isinstance(conn, sqlite3.Connection):
        conn.set_trace_callback(sent.append)
        try:
            yield sent
        finally:
            conn.set_trace_callback(None)
        return
    from psycopg.pq import Trace

    trace = tmp_path / "libpq.trace"
    with open(trace, "w") as fh:
        conn.pgconn.trace(fh.fileno())
        conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield sent
        finally:
            conn.pgconn.untrace()
    sent += [line for line in trace.read_text().splitlines() if line.startswith("B") and "ReadyForQuery" in line]


def test_cached_features_are_read_in_one_round_trip_on_postgres(new_store, tmp_path):
    """Postgres takes the keys as one array (= ANY); SQLite, which has no arrays, in IN lists of 500."""
    target = new_store()
    features = {prompt_sha256(f"p{i}"): bytes([i % 256]) * 8 for i in range(1_200)}
    wanted = [*features, *(prompt_sha256(f"absent{i}") for i in range(30))]
    with OutcomeStore(target) as store:
        store.cache_features(features, "enc")
        store.cache_features({prompt_sha256("p0"): b"other"}, "another encoder")
        with statements_sent(store, tmp_path) as sent:
            found = store.cached_features(wanted, "enc")
        assert found == features
        assert len(sent) == (1 if is_url(target) else 3), sent[:5]
        assert store.cached_features([], "enc") == {}


def _indexes(target) -> set[str]:
    """The store's index names, read through a connection of the test's own."""
    if not is_url(target):
        with contextlib.closing(sqlite3.connect(target)) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    import psycopg

    with psycopg.connect(target) as db:
        return {row[0] for row in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}


def _drop_index(target, name: str) -> None:
    if not is_url(target):
        with contextlib.closing(sqlite3.connect(target)) as db:
            db.execute(f"DROP INDEX {name}")
        return
    import psycopg

    with psycopg.connect(target, autocommit=True) as db:
        db.execute(f"DROP INDEX {name}")


def test_the_schema_ddl_runs_once_per_process_and_store(new_store, tmp_path):
    """A fresh store gets its tables; a later connection to it in this process runs no DDL (an index
    dropped behind its back stays dropped), and a store made anew at a known location gets them again."""
    target = new_store()
    connect(target).close()
    assert {"outcomes_model", "decisions_created"} <= _indexes(target)
    _drop_index(target, "decisions_created")
    with OutcomeStore(target) as store:  # what `CREATE INDEX IF NOT EXISTS` would have put back
        store.add([Outcome(model="m", score=1.0, prompt="a")])
        assert len(store) == 1
    assert "decisions_created" not in _indexes(target)

    if is_url(target):  # the same location, empty again
        import psycopg

        with psycopg.connect(target, autocommit=True) as db:
            schema = db.execute("SELECT current_schema()").fetchone()[0]
            db.execute(f"DROP SCHEMA {schema} CASCADE")
            db.execute(f"CREATE SCHEMA {schema}")
    else:
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"store.sqlite{suffix}").unlink(missing_ok=True)
    with OutcomeStore(target) as store:
        assert len(store) == 0
    assert "decisions_created" in _indexes(target)


def test_a_prompt_with_unicode_line_separators_round_trips_through_jsonl(tmp_path):
    """json.dumps(ensure_ascii=False), as export writes, leaves U+2028/U+2029/U+0085 raw inside a
    string: JSONL lines end at '\\n' only, so such a prompt is one row and later rows keep their line."""
    prompts = ["a\u2028b", "c\u0085d", "e\u2029f"]
    source = tmp_path / "in.jsonl"
    source.write_bytes(("\ufeff" + "\r\n".join(json.dumps({"prompt": p, "model": "gpt4", "score": 1}, ensure_ascii=False)
                                               for p in prompts) + "\r\n{oops\r\n").encode())
    good, bad = parse_file(source, lambda m: "gpt-4-1106-preview")
    assert [o.prompt for o in good] == prompts and bad == ["line 4: not JSON (Expecting property name enclosed "
                                                           "in double quotes)"]
    exported = tmp_path / "out.jsonl"
    write_records(good, exported)
    assert [o.prompt for o in parse_file(exported, lambda m: m)[0]] == prompts


def test_csv_and_parquet_timestamps_as_their_writers_give_them(tmp_path):
    """Epoch seconds in a CSV cell are text, and a parquet timestamp column reads as datetimes: both are
    times the format accepts (a naive one is UTC, as an ISO string without a zone is)."""
    import pandas as pd

    source = tmp_path / "in.csv"
    source.write_text("prompt,model,score,timestamp\na,gpt4,1,1764547200\nb,gpt4,1,1764547200.5\nc,gpt4,1,-\n")
    good, bad = parse_file(source, lambda m: "gpt-4-1106-preview")
    assert [o.timestamp for o in good] == [utc_timestamp(1764547200), utc_timestamp(1764547200.5)]
    assert bad == ["line 4: field 'timestamp': Invalid isoformat string: '-'"]
    frame = pd.DataFrame({"prompt": ["a", "b"], "model": ["gpt4"] * 2, "score": [1.0, 0.0],
                          "timestamp": pd.to_datetime(["2026-12-01T10:00:00Z", "2026-12-01T12:00:00+02:00"], utc=True, format="ISO8601")})
    frame.to_parquet(tmp_path / "utc.parquet")
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    frame.to_parquet(tmp_path / "naive.parquet")
    for name in ("utc.parquet", "naive.parquet"):
        good, bad = parse_file(tmp_path / name, lambda m: "gpt-4-1106-preview")
        assert not bad and [o.timestamp for o in good] == ["2026-12-01T10:00:00.000000Z"] * 2, name


def test_a_model_name_in_another_case_is_a_bad_row_that_says_which_was_meant(tmp_path, aliased, capsys):
    """Logs often spell a model in another case ('GPT-4-1106-preview'): import names the registry's
    spelling, as feedback over HTTP does, rather than only calling the model unknown."""
    source = _jsonl(tmp_path / "in.jsonl", [{"prompt": "x", "model": "GPT-4-1106-Preview", "score": 1}])
    assert main(["outcomes", "import", str(source), "--store", str(tmp_path / "s.sqlite"),
                 "--registry", str(aliased)]) == 2
    assert ("line 1: field 'model': unknown model 'GPT-4-1106-Preview' (did you mean 'gpt-4-1106-preview'?) "
            "(not in the registry)") in capsys.readouterr().err


def test_importing_a_file_again_is_refused_or_skips_what_is_stored(tmp_path, aliased, capsys, new_store):
    """A log imported twice (a rerun, or a file that only grew since) would count every outcome twice in
    the next fit. Rows identical to stored ones (prompt, model, score, timestamp, decision) refuse the
    file by default; --duplicates skip stores only the new ones, --duplicates add stores them again."""
    store = new_store()
    first = _jsonl(tmp_path / "day1.jsonl", ROWS[:2])
    args = ["--store", str(store), "--registry", str(aliased)]
    assert main(["outcomes", "import", str(first), *args]) == 0
    grown = _jsonl(tmp_path / "day2.jsonl", ROWS)
    capsys.readouterr()
    assert main(["outcomes", "import", str(grown), *args]) == 2
    err = capsys.readouterr().err
    assert "2 of its 3 rows are in the store already" in err and "nothing stored" in err
    assert len(_rows(store)) == 2
    assert main(["outcomes", "import", str(grown), *args, "--duplicates", "skip"]) == 0
    assert "stored 1 outcome from" in capsys.readouterr().err and len(_rows(store)) == 3
    assert main(["outcomes", "import", str(first), *args, "--duplicates", "add"]) == 0
    assert len(_rows(store)) == 5
    assert main(["outcomes", "import", str(_jsonl(tmp_path / "now.jsonl", [{"prompt": "x", "model": "gpt4", "score": 1}])),
                 *args]) == 0  # a row without a timestamp is stored at its import's time: it matches no row
    capsys.readouterr()
    # so the same file imported again is known by its content: its rows would be stored twice
    assert main(["outcomes", "import", str(tmp_path / "now.jsonl"), *args]) == 2
    err = capsys.readouterr().err
    assert "the same content was imported at 20" in err and f"as {tmp_path / 'now.jsonl'}, 1 row stored" in err
    assert main(["outcomes", "import", str(tmp_path / "now.jsonl"), *args, "--duplicates", "skip"]) == 0
    assert "nothing stored (--duplicates skip)" in capsys.readouterr().err and len(_rows(store)) == 6
    (tmp_path / "copy.jsonl").write_bytes((tmp_path / "now.jsonl").read_bytes())  # same content, another name
    assert main(["outcomes", "import", str(tmp_path / "copy.jsonl"), *args]) == 2
    assert main(["outcomes", "import", str(tmp_path / "copy.jsonl"), *args, "--duplicates", "add"]) == 0
    assert len(_rows(store)) == 7


def test_unknown_csv_and_parquet_columns_are_named_once_for_the_header(tmp_path):
    """A column the long format lacks is the header's fault, not each row's: one error for the file
    (not one per row of a log of 200,000), with the spelling meant for a column in another case."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pickwise.registry.outcomes import OutcomeError

    source = tmp_path / "in.csv"
    source.write_text("Prompt,model,Score,user_id\n" + "a,gpt4,1,u1\n" * 3)
    with pytest.raises(OutcomeError) as info:
        parse_file(source, lambda m: "gpt-4-1106-preview")
    assert str(info.value).startswith(f"{source}: line 1: unknown column(s) 'Prompt' (did you mean 'prompt'?), "
                                      "'Score' (did you mean 'score'?), 'user_id' (the long format's: prompt, ")
    pq.write_table(pa.table({"prompt": ["a"], "model": ["gpt4"], "score": [1.0], "session": ["s"]}), tmp_path / "in.parquet")
    with pytest.raises(OutcomeError, match=r"in.parquet: unknown column\(s\) 'session' \(the long format's"):
        parse_file(tmp_path / "in.parquet", lambda m: "gpt-4-1106-preview")
    source.write_text("prompt;model;score\na;gpt4;1\n")
    with pytest.raises(OutcomeError, match=r"line 1: one column 'prompt;model;score': separated by ';'\? the CSV"):
        parse_file(source, lambda m: "gpt-4-1106-preview")
    import pandas as pd  # a frame with a row index of its own saves it as a column: not the file's data

    pd.DataFrame({"prompt": ["a", "b"], "model": ["gpt4"] * 2, "score": [1.0, 0.0]}, index=[7, 3]).to_parquet(
        tmp_path / "indexed.parquet")
    good, bad = parse_file(tmp_path / "indexed.parquet", lambda m: "gpt-4-1106-preview")
    assert [o.prompt for o in good] == ["a", "b"] and not bad


def test_writers_opening_a_new_store_together_all_get_in(tmp_path):
    # the service's decision writer and a first feedback open a fresh file at the same moment: switching
    # it to WAL takes a lock SQLite does not wait for, which failed one of them as "database is locked"
    import threading

    failures: list[BaseException] = []

    def write(path, i):
        try:
            with OutcomeStore(path) as store:
                store.add([Outcome(model="m", score=1, prompt=f"p{i}")])
        except BaseException as exc:  # noqa: BLE001 - collected, asserted below
            failures.append(exc)

    for trial in range(40):
        path = tmp_path / f"s{trial}.sqlite"
        threads = [threading.Thread(target=write, args=(path, i)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[0]
        assert len(_rows(path)) == 4


def test_timestamps_before_the_year_1000_keep_four_digits(tmp_path):
    """strftime('%Y') gives '999' for the year 999 on glibc: the stored text then sorted after 2026 (a fit
    held it out as the newest), `stats` made a day of '999-06-01T' and an export did not import again."""
    assert utc_timestamp("0999-06-01T00:00:00Z") == "0999-06-01T00:00:00.000000Z"
    assert utc_timestamp(-62135596800) == "0001-01-01T00:00:00.000000Z"
    assert sorted(map(utc_timestamp, ["2026-06-01", "0999-06-01"]))[0].startswith("0999")
    source = _jsonl(tmp_path / "old.jsonl", [{"prompt": "old", "model": "gpt4", "score": 1, "timestamp": "0999-06-01"}])
    good, _ = parse_file(source, lambda m: "gpt-4-1106-preview")
    write_records(good, tmp_path / "out.jsonl")
    again, bad = parse_file(tmp_path / "out.jsonl", lambda m: "gpt-4-1106-preview")
    assert again == good and not bad


def test_a_column_named_twice_is_refused_not_read_as_its_last_cell(tmp_path):
    """'score,score' read each row's last cell: a row whose first score said 1 was stored with 0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pickwise.registry.outcomes import OutcomeError

    source = tmp_path / "in.csv"
    source.write_text("prompt,model,score,score\na,gpt4,1,0\n")
    with pytest.raises(OutcomeError, match=r"in.csv: line 1: column\(s\) named more than once: 'score'"):
        parse_file(source, lambda m: "gpt-4-1106-preview")
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["gpt4"]), pa.array([1.0]), pa.array([0.0])],
                                        names=["prompt", "model", "score", "score"]), tmp_path / "in.parquet")
    with pytest.raises(OutcomeError, match=r"in.parquet: column\(s\) named more than once: 'score'"):
        parse_file(tmp_path / "in.parquet", lambda m: "gpt-4-1106-preview")


def test_a_csv_cell_with_text_after_its_closing_quote_is_a_bad_row(tmp_path):
    """The lenient reader read '"Yes" or no?' as 'Yes or no?': a prompt stored with other text than the log's."""
    source = tmp_path / "in.csv"
    source.write_text('prompt,model,score\n"Yes" or no?,gpt4,1\nok,gpt4,1\n"multi\nline" x,gpt4,1\n'
                      'He said "hi",gpt4,0\n"a ""b""",gpt4,1\n')
    good, bad = parse_file(source, lambda m: "gpt-4-1106-preview")
    assert [o.prompt for o in good] == ["ok", 'He said "hi"', 'a "b"']
    fix = "a quoted cell has text after its closing quote: quote the whole cell and double each quote inside it"
    assert bad == [f"line 2: {fix}", f"line 5: {fix}"]


def test_an_empty_decision_id_is_a_bad_row(tmp_path):
    """CSV writes an empty decision_id as an empty cell, which reads back as none: the export of a row
    imported with "" did not import as that row. Feedback refuses "" too (min_length 1)."""
    source = _jsonl(tmp_path / "in.jsonl", [{"prompt": "a", "model": "gpt4", "score": 1, "decision_id": ""},
                                            {"prompt_sha256": prompt_sha256("b"), "model": "gpt4", "score": 1,
                                             "prompt_vector": [0.5], "vector_encoder": ""}])
    good, bad = parse_file(source, lambda m: "gpt-4-1106-preview")
    assert not good and bad[0].startswith("line 1: field 'decision_id': expected a non-empty string")
    assert bad[1].startswith("line 2: field 'vector_encoder'")


def test_a_compressed_file_is_named_as_such(tmp_path):
    """A gzip log (or a parquet file) under a .jsonl or .csv name said only 'not UTF-8 text (byte 1)'."""
    import gzip

    from pickwise.registry.outcomes import OutcomeError

    source = tmp_path / "log.jsonl"
    source.write_bytes(gzip.compress(b'{"prompt": "a", "model": "gpt4", "score": 1}\n'))
    with pytest.raises(OutcomeError, match=r"log.jsonl: gzip-compressed: decompress it first \(gunzip\)"):
        parse_file(source, lambda m: "gpt-4-1106-preview")
    (tmp_path / "t.csv").write_bytes(b"PAR1\x15\x04\x15")
    with pytest.raises(OutcomeError, match=r"t.csv: a parquet file: name it \.parquet"):
        parse_file(tmp_path / "t.csv", lambda m: "gpt-4-1106-preview")


def test_tags_with_a_non_finite_number_are_a_bad_row(tmp_path):
    """Python's JSON reader takes NaN and Infinity: such tags were stored, and every export then wrote a
    line that is not JSON to any other reader (jq, a JSON-lines loader, Postgres' json type)."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "a", "model": "gpt4", "score": 1, "tags": {"latency": {"p": NaN}}}\n'
                      '{"prompt": "b", "model": "gpt4", "score": 1, "tags": {"x": [1, -Infinity]}}\n')
    good, bad = parse_file(source, lambda m: "gpt-4-1106-preview")
    assert not good and bad == ["line 1: field 'tags': NaN or an infinity is not JSON (at tags.latency.p)",
                                "line 2: field 'tags': NaN or an infinity is not JSON (at tags.x[1])"]


def test_json_nested_too_deeply_is_a_bad_row_not_a_crash(tmp_path):
    """json.loads raises RecursionError past ~1,000 levels: the import died with a traceback."""
    deep = '{"a": ' * 5000 + "1" + "}" * 5000
    source = tmp_path / "in.jsonl"
    source.write_text(f'{{"prompt": "a", "model": "gpt4", "score": 1, "tags": {deep}}}\n')
    good, bad = parse_file(source, lambda m: "gpt-4-1106-preview")
    assert not good and bad == ["line 1: not JSON (nested too deeply)"]
    table = tmp_path / "in.csv"  # a tags cell is read by the same reader: deep, or a key given twice
    table.write_text('prompt,model,score,tags\n' + f'a,gpt4,1,"{deep.replace(chr(34), 2 * chr(34))}"\n'
                     'b,gpt4,1,"{""k"": 1, ""k"": 2}"\n')
    good, bad = parse_file(table, lambda m: "gpt-4-1106-preview")
    assert not good and bad == ["line 2: field 'tags': not JSON (nested too deeply)",
                                "line 3: field 'tags': key 'k' appears twice in one JSON object; give each key once"]


def test_a_lone_surrogate_is_a_bad_row_naming_its_field(tmp_path, aliased, capsys, new_store):
    """JSON may escape "\\udc00", which is no character: in a decision_id the import died with a traceback
    when the store encoded it, after parsing had passed the row."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "a", "model": "gpt4", "score": 1, "decision_id": "\\udc00x"}\n'
                      '{"prompt": "b\\ud800", "model": "gpt4", "score": 1}\n'
                      '{"prompt": "c", "model": "gpt4", "score": 1, "tags": {"k": ["\\ud800"]}}\n')
    store = new_store()
    assert main(["outcomes", "import", str(source), "--store", str(store), "--registry", str(aliased)]) == 2
    err = capsys.readouterr().err
    for n, field in ((1, "decision_id"), (2, "prompt"), (3, "tags")):
        assert f"line {n}: field '{field}': holds a lone surrogate" in err, err
