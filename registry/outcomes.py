"""The outcome store: observed scores of (prompt, model) pairs, in one SQLite database (WAL mode)
or, named by a URL, one Postgres database (`pickwise.registry.sql`: the same SQL on either).

It lives in the registry layer, the lowest one, because every layer above uses it: the CLI and the
HTTP app write outcomes, and `pickwise fit` (predictor layer) reads them. Model names are resolved
to registry names by the caller before they are stored (`resolve_model`).

Each outcome keeps the prompt's text, or, when the caller asks not to keep it, only its sha256 and,
if the caller has one, the prompt's vector from the encoder (text cannot be re-encoded later, so a
hashed row without a vector can only be counted, never fitted). Every write is one transaction:
a batch is stored whole or not at all, and a committed batch survives a crash of the writer
(`synchronous=FULL`, Postgres's `synchronous_commit=on`, make the commit durable before it returns).

The same file holds the routing decisions feedback can name by id (`decisions` table; written and
read by `pickwise.registry.decisions`).

Several processes on one host may share a store file (WAL readers never block the writer; writers
wait up to `busy_timeout`). A SQLite file on a network volume shared by several hosts is not safe:
its locks do not hold across hosts; replicas on several hosts share a Postgres store (docs/outcomes.md).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pickwise.registry.errors import OutcomeError, StoreUnavailable
from pickwise.registry.jsonl import NestedTooDeeply, loads_unique, lone_surrogate
from pickwise.registry.loader import pickwise_home
from pickwise.registry.prompt_text import not_blank
from pickwise.registry.sql import Database, store_exists

__all__ = ["OutcomeError", "StoreUnavailable", "store_exists"]  # re-exported: every store user imports them here

SCHEMA_VERSION = 1
STORE_FILE = "outcomes.sqlite"
# the long format of import and export, in this column order
FIELDS = ("prompt", "prompt_sha256", "prompt_vector", "vector_encoder", "model", "score", "cost_usd", "latency_ms",
          "output_tokens", "timestamp", "decision_id", "tags")
REQUIRED = ("model", "score")
_INSERT = ("INSERT INTO outcomes (prompt, prompt_sha256, prompt_vector, vector_encoder, model, score, cost_usd, "
           "latency_ms, output_tokens, ts, decision_id, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
IMPORT_SUFFIXES = (".jsonl", ".csv", ".parquet")

# column types are the dialect's ({key}: an autoincrementing integer key; registry.sql)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    id {key},
    prompt {text},
    prompt_sha256 {text} NOT NULL,
    prompt_vector {blob},
    vector_encoder {text},
    model {text} NOT NULL,
    score {real} NOT NULL CHECK (score >= 0 AND score <= 1),
    cost_usd {real},
    latency_ms {real},
    output_tokens {int},
    ts {text} NOT NULL,
    decision_id {text},
    tags {text}
);
CREATE INDEX IF NOT EXISTS outcomes_model ON outcomes (model);
CREATE INDEX IF NOT EXISTS outcomes_sha ON outcomes (prompt_sha256);
CREATE INDEX IF NOT EXISTS outcomes_ts_id ON outcomes (ts, id);
CREATE INDEX IF NOT EXISTS outcomes_decision ON outcomes (decision_id, model);
CREATE TABLE IF NOT EXISTS feature_cache (
    prompt_sha256 {text} NOT NULL,
    encoder {text} NOT NULL,
    features {blob} NOT NULL,
    PRIMARY KEY (prompt_sha256, encoder)
);
CREATE TABLE IF NOT EXISTS store_meta (key {text} PRIMARY KEY, value {text} NOT NULL);
CREATE TABLE IF NOT EXISTS imports (
    file_sha256 {text} PRIMARY KEY,
    name {text} NOT NULL,
    rows {int} NOT NULL,
    imported_at {text} NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    seq {key},
    id {text} NOT NULL UNIQUE,
    created {text} NOT NULL,
    prompt {text},
    prompt_sha256 {text} NOT NULL,
    chosen {text} NOT NULL,
    prompt_vector {blob},
    vector_encoder {text},
    answered_by {text},
    output_tokens {int},
    latency_ms {real},
    cost_usd {real}
);
CREATE INDEX IF NOT EXISTS decisions_created ON decisions (created)
"""
# columns added since a table was first shipped, nullable: a store made by older code gains them
_ADDED_COLUMNS = {"decisions": {"cost_usd": "{real}"}}


def default_store_path() -> Path:
    """$PICKWISE_HOME/outcomes.sqlite (default ~/.pickwise/outcomes.sqlite), like the user registry."""
    return pickwise_home() / STORE_FILE


def prompt_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_timestamp(value: Any = None) -> str:
    """ISO 8601 in UTC with microseconds and a 'Z': from None (now), epoch seconds, an ISO string or
    a datetime (what a parquet timestamp column reads as); one without a zone is taken as UTC.
    ValueError when it is none of those.

    Always the same width, so that text order is time order (the store sorts and pages by it)."""
    if value is None:
        moment = datetime.now(timezone.utc)
    elif isinstance(value, datetime):
        moment = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"not a finite epoch time: {value}")
        if value >= 253402300800:  # 10000-01-01: past it, most likely milliseconds (many loggers write them)
            raise ValueError(f"{value} is after the year 9999 in epoch seconds: epoch milliseconds? give seconds "
                             f"({value / 1000})")
        moment = datetime.fromtimestamp(value, timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    else:
        raise ValueError(f"expected an ISO 8601 string or epoch seconds, got {type(value).__name__}")
    # isoformat, not strftime('%Y'): glibc writes the year 999 as '999', which sorts after '2026'
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True)
class Outcome:
    """One observed result. `model` is a registry name; `prompt` None when only its hash is kept."""

    model: str
    score: float
    prompt: str | None = None
    prompt_sha256: str = ""
    prompt_vector: tuple[float, ...] | None = None  # the encoder's u, float32 values
    vector_encoder: str | None = None  # which encoder made prompt_vector (QualityPredictor.encoder_version)
    cost_usd: float | None = None
    latency_ms: float | None = None
    output_tokens: int | None = None
    timestamp: str = field(default_factory=utc_timestamp)
    decision_id: str | None = None
    tags: dict | None = None

    def __post_init__(self):
        if self.prompt is None and not self.prompt_sha256:
            raise ValueError("an outcome needs its prompt or the prompt's sha256")
        if self.prompt is not None and not self.prompt_sha256:
            object.__setattr__(self, "prompt_sha256", prompt_sha256(self.prompt))

    def record(self) -> dict:
        """The row in the long format of import/export (FIELDS; prompt_vector as a list)."""
        row = asdict(self)
        row["prompt_vector"] = list(self.prompt_vector) if self.prompt_vector is not None else None
        return {k: row[k] for k in FIELDS}


def _f32_blob(vector) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype="<f4").tobytes()


def _f32_tuple(blob: bytes | None) -> tuple[float, ...] | None:
    return None if blob is None else tuple(float(x) for x in np.frombuffer(blob, dtype="<f4"))


# store locations whose tables this process has created (or found): a store's every later connection
# (a server opens several: feedback, the decision writer, its reader) skips the DDL
_schema_done: set[str] = set()
_schema_lock = threading.Lock()


def _check_version(db: Database) -> None:
    found = db.execute("SELECT value FROM store_meta WHERE key='schema_version'").fetchone()
    if found is None:
        db.execute("INSERT INTO store_meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING", (str(SCHEMA_VERSION),))
    elif int(found[0]) != SCHEMA_VERSION:
        raise OutcomeError(f"{db.location}: outcome store schema {found[0]}, this code reads {SCHEMA_VERSION}")


def _create_schema(db: Database) -> None:
    """Create the tables where missing (once per process and location) and check the schema's version.
    A location done before whose tables are gone (a file deleted and made again, a database dropped)
    has no store_meta for the version check to read: its tables are created again."""
    with _schema_lock:
        if db.location not in _schema_done:
            db.create_schema([part.strip().format(**db.dialect.types) for part in _SCHEMA.split(";")])
            for table, columns in _ADDED_COLUMNS.items():
                db.add_columns(table, {name: kind.format(**db.dialect.types) for name, kind in columns.items()})
            _check_version(db)
            _schema_done.add(db.location)
            return
    try:
        _check_version(db)
    except db.errors:
        with _schema_lock:
            _schema_done.discard(db.location)
        _create_schema(db)


def connect(target: str | os.PathLike, *, busy_timeout_s: float = 10.0, synchronous: str = "FULL") -> Database:
    """A connection to the store at `target`, a file path or a Postgres URL (its tables created when
    new), in autocommit (callers open their transactions with `db.transaction()`), usable from any one
    thread at a time. OutcomeError when it is not a store this code reads; StoreUnavailable when a
    server cannot be reached."""
    db = Database(target, busy_timeout_s=busy_timeout_s, synchronous=synchronous)
    try:
        _create_schema(db)
    except OutcomeError:
        db.close()
        raise
    except db.errors as exc:
        db.close()
        raise OutcomeError(f"{db.location}: not a usable outcome store ({exc})") from None
    except BaseException:
        db.close()
        raise
    return db


class OutcomeStore:
    """A connection to one store (a file path or a Postgres URL); thread-safe (one connection behind a lock)."""

    def __init__(self, target: str | os.PathLike | None = None, *, busy_timeout_s: float = 10.0):
        self.target = target if target is not None else default_store_path()
        self._lock = threading.Lock()
        # FULL: a commit is on disk before it returns (NORMAL in WAL mode may lose the last
        # commits on power loss; a process crash loses nothing either way)
        self._db = connect(self.target, busy_timeout_s=busy_timeout_s, synchronous="FULL")
        self.location = self._db.location  # what messages and a fit's metadata name: no password

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> OutcomeStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Database]:
        with self._lock, self._db.transaction() as db:
            yield db

    # ---- writes ----------------------------------------------------------------------------
    def add(self, outcomes: Iterable[Outcome], *, from_file: tuple[str, str] | None = None) -> int:
        """Store a batch in one transaction (all or nothing); returns how many rows were added.
        `from_file`: (the file's sha256, its name), recorded with the rows for `imported`."""
        rows = [_row(o) for o in outcomes]
        with self._transaction() as db:
            db.executemany(_INSERT, rows)
            if from_file is not None:
                db.execute("INSERT INTO imports VALUES (?, ?, ?, ?) ON CONFLICT (file_sha256) DO UPDATE SET "
                           "name = excluded.name, rows = excluded.rows, imported_at = excluded.imported_at",
                           (*from_file, len(rows), utc_timestamp()))
        return len(rows)

    def imported(self, file_sha256: str) -> tuple[str, int, str] | None:
        """(name, rows stored, when) of the last import of a file with this content, if any: a file
        imported again would add its rows again, and those without a timestamp match no stored row."""
        with self._lock:
            row = self._db.execute("SELECT name, rows, imported_at FROM imports WHERE file_sha256 = ?",
                                   (file_sha256,)).fetchone()
        return None if row is None else (row[0], int(row[1]), row[2])

    def stored_already(self, outcomes: Sequence[Outcome]) -> list[int]:
        """Indexes of `outcomes` identical to a stored row in prompt, model, score, timestamp and decision:
        the same event imported before (timestamps carry microseconds; a row given none is stamped at its
        import, so never matches). One range read over the batch's time span."""
        if not outcomes:
            return []
        times = [o.timestamp for o in outcomes]
        with self._lock:
            found = self._db.execute("SELECT prompt_sha256, model, score, ts, decision_id FROM outcomes "
                                     "WHERE ts >= ? AND ts <= ?", (min(times), max(times))).fetchall()
        stored = {tuple(row) for row in found}
        return [i for i, o in enumerate(outcomes)
                if (o.prompt_sha256, o.model, float(o.score), o.timestamp, o.decision_id) in stored]

    def add_feedback(self, outcome: Outcome) -> bool:
        """Store feedback on a decision, replacing earlier feedback on the same decision and model (a
        retry or a corrected score must not count twice in a fit); True when it replaced one."""
        if outcome.decision_id is None:
            raise ValueError("add_feedback takes feedback on a decision (decision_id set); use add")
        with self._transaction() as db:
            replaced = db.execute("DELETE FROM outcomes WHERE decision_id = ? AND model = ?",
                                  (outcome.decision_id, outcome.model)).rowcount
            db.executemany(_INSERT, [_row(outcome)])
        return replaced > 0

    # ---- reads -----------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def outcomes(self, batch: int = 10_000) -> Iterator[Outcome]:
        """Every outcome, oldest first (by timestamp, then insertion)."""
        last = None
        while True:
            with self._lock:
                query = ("SELECT id, prompt, prompt_sha256, prompt_vector, vector_encoder, model, score, cost_usd, "
                         "latency_ms, output_tokens, ts, decision_id, tags FROM outcomes ")
                if last is None:
                    found = self._db.execute(query + "ORDER BY ts, id LIMIT ?", (batch,)).fetchall()
                else:
                    found = self._db.execute(query + "WHERE (ts, id) > (?, ?) ORDER BY ts, id LIMIT ?",
                                             (*last, batch)).fetchall()
            if not found:
                return
            for row in found:
                yield Outcome(model=row[5], score=row[6], prompt=row[1], prompt_sha256=row[2],
                              prompt_vector=_f32_tuple(row[3]), vector_encoder=row[4], cost_usd=row[7],
                              latency_ms=row[8], output_tokens=row[9], timestamp=row[10], decision_id=row[11],
                              tags=json.loads(row[12]) if row[12] is not None else None)
            last = (found[-1][10], found[-1][0])

    def stats(self) -> dict:
        """Counts per model and per day (UTC), with what the outcomes that record a cost cost in all, the
        time range and how many rows keep only a hash."""
        with self._lock:
            db = self._db
            total, first, last = db.execute("SELECT COUNT(*), MIN(ts), MAX(ts) FROM outcomes").fetchone()
            per_model = db.execute("SELECT model, COUNT(*), AVG(score), COUNT(DISTINCT prompt_sha256), SUM(cost_usd), "
                                   "COUNT(cost_usd) FROM outcomes GROUP BY model ORDER BY COUNT(*) DESC, model").fetchall()
            per_day = db.execute("SELECT substr(ts, 1, 10), COUNT(*), SUM(cost_usd), COUNT(cost_usd) FROM outcomes "
                                 "GROUP BY 1 ORDER BY 1").fetchall()
            hashed = db.execute("SELECT COUNT(*), COUNT(prompt_vector) FROM outcomes WHERE prompt IS NULL").fetchone()
            prompts = db.execute("SELECT COUNT(DISTINCT prompt_sha256) FROM outcomes").fetchone()[0]
        return {
            "store": self.location, "outcomes": total, "prompts": prompts, "first": first, "last": last,
            "hashed_prompts": {"rows": hashed[0], "with_vector": hashed[1]},
            "per_model": [{"model": m, "outcomes": n, "mean_score": round(s, 6), "prompts": p, **_spend(c, k)}
                          for m, n, s, p, c, k in per_model],
            "per_day": [{"day": d, "outcomes": n, **_spend(c, k)} for d, n, c, k in per_day],
        }

    # ---- the encoder's features, cached per prompt and encoder -------------------------------
    def cached_features(self, shas: Sequence[str], encoder: str) -> dict[str, bytes]:
        """The cached features of those of `shas` that `encoder` has features for."""
        with self._lock:
            return dict(self._db.select_in(
                "SELECT prompt_sha256, features FROM feature_cache WHERE encoder=? AND prompt_sha256 {in_keys}",
                (encoder,), shas))

    def cache_features(self, items: dict[str, bytes], encoder: str) -> None:
        with self._transaction() as db:
            db.executemany("INSERT INTO feature_cache VALUES (?, ?, ?) ON CONFLICT (prompt_sha256, encoder) "
                           "DO UPDATE SET features = excluded.features",
                           [(sha, encoder, blob) for sha, blob in items.items()])


def _spend(total: float | None, rows: int) -> dict:
    """`cost_usd`: the sum over the rows that record a cost (`costed` of them; None when none does)."""
    return {"cost_usd": None if total is None else round(float(total), 9), "costed": rows}


# ---- the long format: JSONL, CSV, parquet ---------------------------------------------------
def _number(value: Any, name: str, *, low: float | None = None, high: float | None = None, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"field '{name}': expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"field '{name}': expected a finite number, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise ValueError(f"field '{name}': expected an integer, got {value!r}")
        value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ValueError(f"field '{name}': expected a number {span}, got {value!r}")
    return value


def check_output_tokens(tokens: int | None, model: str, limit: int) -> None:
    """ValueError when an answer is longer than its model may give (the registry's max_output_tokens):
    no call answered that, and a length refit would learn it as one."""
    if tokens is not None and tokens > limit:
        raise ValueError(f"{tokens:,} is above {model}'s max_output_tokens ({limit:,}) in the registry")


def check_tags(tags: Any) -> None:
    """ValueError naming the first NaN or infinity in tags: Python's JSON reader takes them, but what the
    store and every export would then write is not JSON to any other reader. A loop, not recursion: JSON
    nested nearly as deep as the reader allows would exceed Python's stack here."""
    pending = [(tags, "tags")]
    while pending:
        value, where = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"NaN or an infinity is not JSON (at {where})")
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        pending.extend((item, f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]")
                       for key, item in reversed(list(items)))


def parse_record(record: Any, resolve_model, max_output_tokens=None) -> Outcome:
    """One row of the long format as an Outcome; ValueError naming the field when it is bad.

    `resolve_model(name_or_alias) -> registry name` raises KeyError for an unknown model (its argument,
    when a string, a hint the message ends with: " (did you mean 'x'?)");
    `max_output_tokens(registry name) -> int`, when given, bounds the row's output_tokens."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object with fields {', '.join(FIELDS)}, got {type(record).__name__}")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(FIELDS)})")
    for name, value in record.items():  # else the store's encoding of it fails, after the file passed
        surrogate = lone_surrogate(value)
        if surrogate:
            raise ValueError(f"field {name!r}: {surrogate}")
    missing = [k for k in REQUIRED if record.get(k) is None]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(map(repr, missing))}")
    prompt, sha, vector = record.get("prompt"), record.get("prompt_sha256"), record.get("prompt_vector")
    if prompt is not None and (not isinstance(prompt, str) or not prompt):
        raise ValueError(f"field 'prompt': expected a non-empty string, got {prompt!r}"[:120])
    if prompt is not None:
        try:
            not_blank(prompt)
        except ValueError as exc:
            raise ValueError(f"field 'prompt': {exc}") from None
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise ValueError(f"field 'prompt_sha256': expected 64 lowercase hex digits, got {sha!r}")
    if prompt is None and sha is None:
        raise ValueError("missing field 'prompt' (or 'prompt_sha256' for a row that keeps only the hash)")
    if prompt is not None and sha is not None and sha != prompt_sha256(prompt):
        raise ValueError("field 'prompt_sha256': is not the sha256 of 'prompt'")
    if vector is not None:
        if not isinstance(vector, list) or not vector or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vector):
            raise ValueError("field 'prompt_vector': expected a non-empty list of finite numbers")
        vector = tuple(float(np.float32(x)) for x in vector)
    model = record["model"]
    if not isinstance(model, str):
        raise ValueError(f"field 'model': expected a string, got {type(model).__name__}")
    try:
        model = resolve_model(model)
    except KeyError as exc:
        hint = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
        raise ValueError(f"field 'model': unknown model {record['model']!r}{hint} (not in the registry)") from None
    tags = record.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise ValueError(f"field 'tags': expected a JSON object, got {type(tags).__name__}")
    try:
        check_tags(tags)
    except ValueError as exc:
        raise ValueError(f"field 'tags': {exc}") from None
    try:
        timestamp = utc_timestamp(record.get("timestamp"))
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"field 'timestamp': {exc}") from None
    encoder = record.get("vector_encoder")
    # non-empty: CSV writes "" as an empty cell, which reads back as null
    if encoder is not None and (not isinstance(encoder, str) or not encoder or vector is None):
        raise ValueError("field 'vector_encoder': a non-empty string, given only with 'prompt_vector'")
    decision = record.get("decision_id")
    if decision is not None and (not isinstance(decision, str) or not decision):
        raise ValueError(f"field 'decision_id': expected a non-empty string, got {decision!r}"[:120])
    tokens = None if record.get("output_tokens") is None \
        else _number(record["output_tokens"], "output_tokens", low=0, integer=True)
    if max_output_tokens is not None:
        try:
            check_output_tokens(tokens, model, max_output_tokens(model))
        except ValueError as exc:
            raise ValueError(f"field 'output_tokens': {exc}") from None
    return Outcome(
        model=model, score=float(_number(record["score"], "score", low=0.0, high=1.0)), prompt=prompt,
        prompt_sha256=sha or "", prompt_vector=vector, vector_encoder=encoder,
        cost_usd=None if record.get("cost_usd") is None else float(_number(record["cost_usd"], "cost_usd", low=0.0)),
        latency_ms=None if record.get("latency_ms") is None else float(_number(record["latency_ms"], "latency_ms", low=0.0)),
        output_tokens=tokens, timestamp=timestamp, decision_id=decision, tags=tags,
    )


def _csv_cell(name: str, text: str) -> Any:
    """A CSV cell as the JSON value it stands for: empty is null, numbers and JSON fields parsed."""
    if text == "":
        return None
    if name == "timestamp":  # epoch seconds, which CSV can only give as text
        try:
            return float(text)
        except ValueError:
            return text  # ISO 8601, or parse_record names it
    if name in ("score", "cost_usd", "latency_ms", "output_tokens"):
        try:
            return float(text) if name != "output_tokens" or not text.lstrip("-").isdigit() else int(text)
        except ValueError:
            return text  # parse_record names it
    if name in ("tags", "prompt_vector"):
        try:
            return loads_unique(text)
        except json.JSONDecodeError:
            raise ValueError(f"field {name!r}: not JSON: {text[:60]!r}") from None
        except NestedTooDeeply as exc:
            raise ValueError(f"field {name!r}: not JSON ({exc.msg})") from None
        except ValueError as exc:
            raise ValueError(f"field {name!r}: {exc}") from None
    return text


def read_records(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """(where, record) for every row of a JSONL, CSV or parquet file; a record that cannot be
    read at all is an Exception instance in place of the record."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise OutcomeError(f"{path}: expected a .jsonl, .csv or .parquet file")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:  # the columns first: reading a table with a column named twice fails with pyarrow's internals
            schema = pq.read_schema(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise OutcomeError(f"{path}: not a readable parquet file ({exc})") from None
        index = [c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
        _check_columns([c for c in schema.names if c not in index], f"{path}")  # less pandas' saved row index
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise OutcomeError(f"{path}: not a readable parquet file ({exc})") from None
        table = table.drop_columns([c for c in index if c in table.column_names])
        rows = table.to_pylist()
        for i, row in enumerate(rows, start=1):
            cleaned = {}
            for k, v in row.items():
                if isinstance(v, float) and math.isnan(v):
                    v = None
                if k in ("tags", "prompt_vector") and isinstance(v, str):
                    try:
                        v = loads_unique(v)
                    except ValueError:
                        pass  # parse_record names a string where an object or list belongs
                cleaned[k] = v
            yield f"row {i}", cleaned
        return
    with open(path, "rb") as fh:
        raw = fh.read()
    for magic, what in ((b"\x1f\x8b", "gzip-compressed: decompress it first (gunzip)"),
                        (b"PAR1", "a parquet file: name it .parquet"), (b"PK\x03\x04", "a zip archive: unzip it first")):
        if raw.startswith(magic):  # else "not UTF-8 text (byte 1)", which says nothing of why
            raise OutcomeError(f"{path}: {what}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OutcomeError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if suffix == ".jsonl":
        # lines end at '\n' only: splitlines() would also end one at U+2028, U+2029 or U+0085, which
        # JSON leaves raw inside a string (and export, writing UTF-8, does too)
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                yield f"line {n}", loads_unique(line)
            except (json.JSONDecodeError, NestedTooDeeply) as exc:
                yield f"line {n}", ValueError(f"not JSON ({exc.msg})")
            except ValueError as exc:  # a repeated key
                yield f"line {n}", exc
        return
    # strict: the lenient reader reads '"Yes" or no?' as 'Yes or no?', another prompt than the log's
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error:
        raise OutcomeError(f"{path}: line 1: the header is not valid CSV") from None
    if header is None:
        return
    _check_columns(header, f"{path}: line 1")
    end = reader.line_num
    while True:
        start = end + 1  # a quoted cell may span lines: the row's first line, and then (n) its last
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "end of data" in str(exc):  # an unclosed quote ran to the end: no later row can be told apart
                raise OutcomeError(f"{path}: line {start}: a quoted cell is never closed (it runs to the end of the "
                                   "file); close the quote, or double a quote inside a quoted cell") from None
            end = reader.line_num  # the reader goes on at the next line
            yield f"line {end}", ValueError("a quoted cell has text after its closing quote: quote the whole cell "
                                            "and double each quote inside it")
            continue
        n = end = reader.line_num
        if not any(row):
            continue
        if len(row) != len(header):
            yield f"line {n}", ValueError(f"{len(row)} cells, the header has {len(header)}")
            continue
        try:
            yield f"line {n}", {name: _csv_cell(name, cell) for name, cell in zip(header, row)}
        except ValueError as exc:
            yield f"line {n}", exc


def _check_columns(columns: Sequence[str], where: str) -> None:
    """OutcomeError naming a CSV header's or parquet schema's columns that are no field of the long format
    (once for the file: every row would repeat it), with the field meant where only the case differs,
    or that are named twice."""
    unknown = [c for c in columns if c not in FIELDS]
    if unknown:
        named = ", ".join(repr(c) + (f" (did you mean {c.strip().lower()!r}?)" if c.strip().lower() in FIELDS else "")
                          for c in unknown)
        other = [sep for sep in (";", "\t", "|") if len(columns) == 1 and sep in columns[0]]
        if other:  # Excel in many locales writes ';', and a .tsv renamed .csv has tabs
            raise OutcomeError(f"{where}: one column {columns[0][:80]!r}: separated by {other[0]!r}? "
                               "the CSV import reads comma-separated values")
        raise OutcomeError(f"{where}: unknown column(s) {named} (the long format's: {', '.join(FIELDS)}); "
                           "rename or drop them (anything else to keep goes in the 'tags' JSON object)")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:  # each row would be read with the last of them, silently dropping the others
        raise OutcomeError(f"{where}: column(s) named more than once: {', '.join(map(repr, repeated))}; "
                           "keep one of each")


def parse_file(path: str | os.PathLike, resolve_model, max_output_tokens=None) -> tuple[list[Outcome], list[str]]:
    """Every good outcome of a file and a message per bad row ('line N: ...'); the callables as parse_record takes them."""
    good, bad = [], []
    for where, record in read_records(path):
        if isinstance(record, Exception):
            bad.append(f"{where}: {record}")
            continue
        try:
            good.append(parse_record(record, resolve_model, max_output_tokens))
        except ValueError as exc:
            bad.append(f"{where}: {exc}")
    return good, bad


def write_records(outcomes: Iterable[Outcome], path: str | os.PathLike) -> int:
    """Write the long format (by the file's suffix: .jsonl, .csv or .parquet); returns the row count.

    Written to a temporary sibling and renamed, so a reader never sees half a file."""
    from pickwise.files import atomic_file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise OutcomeError(f"{path}: expected a .jsonl, .csv or .parquet file name")
    records = [o.record() for o in outcomes]
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {k: [r[k] for r in records] for k in FIELDS}
        columns["tags"] = [json.dumps(t, sort_keys=True) if t is not None else None for t in columns["tags"]]
        columns["prompt_vector"] = [json.dumps(v) if v is not None else None for v in columns["prompt_vector"]]
        types = {"score": pa.float64(), "cost_usd": pa.float64(), "latency_ms": pa.float64(),
                 "output_tokens": pa.int64()}
        table = pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in columns.items()})
        with atomic_file(path) as fh:
            pq.write_table(table, fh)
        return len(records)
    with atomic_file(path, "w") as fh:
        if suffix == ".jsonl":
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")
        else:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(FIELDS)
            for r in records:
                writer.writerow(["" if r[k] is None else json.dumps(r[k], sort_keys=True) if k in ("tags", "prompt_vector")
                                 else repr(r[k]) if isinstance(r[k], float) else r[k] for k in FIELDS])
    return len(records)


def _row(o: Outcome) -> tuple:
    """An outcome as `_INSERT` takes it."""
    return (o.prompt, o.prompt_sha256, _f32_blob(o.prompt_vector), o.vector_encoder, o.model, float(o.score),
            o.cost_usd, o.latency_ms, o.output_tokens, o.timestamp, o.decision_id,
            json.dumps(o.tags, sort_keys=True, separators=(",", ":")) if o.tags is not None else None)
