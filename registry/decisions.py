"""Routing decisions, kept in the outcome store so that feedback can name one by its id.

A select, or a routed gateway call, records what feedback by `decision_id` needs later: the prompt
(only its sha256 when the service keeps no prompt text), the registry names chosen, the prompt's
vector u and the encoder that made it (so feedback that keeps only the hash still refits vectors)
and, for a gateway call, the model that answered, its output tokens, its latency and what it cost. They live in
the store's `decisions` table: a restarted server, and every replica or worker sharing the store
(a file on one host, a Postgres database across hosts), knows every decision (a SQLite file shared
across hosts is not safe: see `pickwise.registry.outcomes`).

The request path never waits for the disk: `record` queues the decision (bounded: past
`queue_limit` it is not kept, and says so) and one writer thread stores the queue in batches, one
transaction each, so a writer elsewhere holding the store (an import) stalls no request. Until its
batch commits a decision is found in this process's queue; other processes see it once committed
(normally milliseconds). A crash loses the decisions still queued, never an outcome: outcomes are
written by `OutcomeStore`, synchronously, with synchronous=FULL; decisions use NORMAL (a process
crash loses no committed batch, a power loss, or a Postgres server's crash, may lose the last ones).

Bounded by age (`keep_s`) and count (`max_rows`): the writer deletes expired rows and the oldest
beyond the count on its first batch and then after every `prune_every` decisions, at most
PRUNE_CHUNK rows a transaction; `get` never returns an expired decision, pruned yet or not.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pickwise.registry.outcomes import (
    OutcomeError,
    connect,
    default_store_path,
    prompt_sha256,
    store_exists,
    utc_timestamp,
)
from pickwise.registry.sql import Database, driver_errors, location

log = logging.getLogger("pickwise.decisions")

DEFAULT_KEEP_S = 7 * 86400.0
DEFAULT_MAX_ROWS = 1_000_000
QUEUE_LIMIT = 10_000  # decisions waiting for the writer; ~100 s of 100 selects/s with the file held
WRITE_BATCH = 500  # most decisions in one transaction
PRUNE_EVERY = 1_000
PRUNE_CHUNK = 5_000
WRITER_BUSY_TIMEOUT_S = 60.0  # the writer is off the request path: it may wait out a long import

_COLUMNS = ("id", "created", "prompt", "prompt_sha256", "chosen", "prompt_vector", "vector_encoder", "answered_by",
            "output_tokens", "latency_ms", "cost_usd")
_INSERT = f"INSERT INTO decisions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM decisions WHERE id = ?"


@dataclass(frozen=True)
class Decision:
    """One recorded decision. `prompt` None when only its hash is kept; `answered_by` (a gateway call):
    the model whose answer the caller got, after any fallbacks."""

    id: str
    chosen: tuple[str, ...]  # registry names
    prompt: str | None
    prompt_sha256: str
    u: np.ndarray | None  # float32: the prompt's vector, for feedback that keeps only the hash
    encoder: str | None  # the encoder that made u
    created: str  # utc_timestamp
    answered_by: str | None = None
    output_tokens: int | None = None  # the upstream's usage.completion_tokens
    latency_ms: float | None = None
    cost_usd: float | None = None  # the call at the registry's list prices, from the upstream's usage

    def row(self) -> tuple:
        vector = None if self.u is None else np.asarray(self.u, dtype="<f4").tobytes()
        return (self.id, self.created, self.prompt, self.prompt_sha256, json.dumps(list(self.chosen)), vector,
                self.encoder, self.answered_by, self.output_tokens, self.latency_ms, self.cost_usd)

    @classmethod
    def from_row(cls, row: Sequence) -> Decision:
        (id_, created, prompt, sha, chosen, vector, encoder, answered_by, output_tokens, latency_ms, cost_usd) = row
        u = None if vector is None else np.frombuffer(vector, dtype="<f4").astype(np.float32)
        return cls(id_, tuple(json.loads(chosen)), prompt, sha, u, encoder, created, answered_by, output_tokens,
                   latency_ms, cost_usd)


def _insert(db: Database, decisions: list[Decision]) -> None:
    with db.transaction():
        db.executemany(_INSERT, [d.row() for d in decisions])


class DecisionStore:
    """The decisions of one store (a file path or a Postgres URL): queued by `record`, written by one
    writer thread (started by the first record, so a server that decides nothing makes no file),
    read back by `get`."""

    def __init__(self, target: str | Path | None = None, *, keep_s: float = DEFAULT_KEEP_S,
                 max_rows: int = DEFAULT_MAX_ROWS, keep_prompt: bool = True, queue_limit: int = QUEUE_LIMIT,
                 prune_every: int = PRUNE_EVERY, clock=time.time):
        self.target = target if target is not None else default_store_path()
        self.location = location(self.target)  # how logs name the store
        self.keep_s, self.max_rows, self.keep_prompt = keep_s, max_rows, keep_prompt
        self.prune_every, self._clock = prune_every, clock
        self._queue: queue.Queue[Decision | None] = queue.Queue(maxsize=queue_limit)
        self._pending: dict[str, Decision] = {}  # queued or being written: found here until committed
        self._lock = threading.Lock()  # guards _pending, _writer, _closed
        self._writer: threading.Thread | None = None
        self._closed = False
        self._reader: Database | None = None
        self._read_lock = threading.Lock()
        self.dropped = 0  # decisions not kept: the queue was full, or their batch failed

    # ---- the request path ----------------------------------------------------------------------
    def record(self, prompt: str, chosen: Sequence[str], u=None, encoder: str | None = None, *,
               decision_id: str | None = None, answered_by: str | None = None, output_tokens: int | None = None,
               latency_ms: float | None = None, cost_usd: float | None = None) -> str | None:
        """Queue one decision; its id (`decision_id`, or a new uuid4 hex), or None when it cannot be kept
        (the queue is full: the store has been unwritable for a while)."""
        decision = Decision(
            id=decision_id or uuid.uuid4().hex, chosen=tuple(chosen), prompt=prompt if self.keep_prompt else None,
            prompt_sha256=prompt_sha256(prompt), u=None if u is None else np.array(u, dtype=np.float32),
            encoder=encoder, created=utc_timestamp(self._clock()), answered_by=answered_by,
            output_tokens=output_tokens, latency_ms=latency_ms, cost_usd=cost_usd)
        with self._lock:
            if self._closed:
                return None
            try:
                self._queue.put_nowait(decision)
            except queue.Full:
                self.dropped += 1
                log.warning("decision %s not kept: %d decisions wait for the store %s", decision.id,
                            self._queue.qsize(), self.location)
                return None
            self._pending[decision.id] = decision
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="pickwise-decisions", daemon=True)
                self._writer.start()
        return decision.id

    def get(self, decision_id: str) -> Decision | None:
        """The decision of that id, if it is known here or in the store and not older than `keep_s`."""
        with self._lock:
            found = self._pending.get(decision_id)
        if found is None and store_exists(self.target):  # a lookup never creates a file
            with self._read_lock:
                if self._reader is None:
                    self._reader = connect(self.target, synchronous="NORMAL")
                row = self._reader.execute(_SELECT, (decision_id,)).fetchone()
            found = None if row is None else Decision.from_row(row)
        if found is None or found.created < self._cutoff():
            return None
        return found

    # ---- lifetime ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Wait until every decision queued so far is written (or given up on)."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, stop the writer; later records are not kept."""
        with self._lock:
            self._closed, writer = True, self._writer
        if writer is not None:
            self._queue.put(None)
            writer.join()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # ---- the writer thread ---------------------------------------------------------------------
    def _cutoff(self) -> str:
        return utc_timestamp(self._clock() - self.keep_s)

    def _write_loop(self) -> None:
        db: Database | None = None
        since_prune = self.prune_every  # prune after the first batch too: a restart clears what expired
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(d is None for d in batch)
            decisions = [d for d in batch if d is not None]
            try:
                if decisions:
                    db = db or self._open()
                    stored = db is not None and self._logged(_insert, db, decisions,
                                                             what=f"storing {len(decisions)} decision(s)")
                    self._done(decisions, stored)
                    since_prune += len(decisions)
                    if stored and since_prune >= self.prune_every:
                        since_prune = 0
                        self._logged(self._prune, db, what="pruning decisions")
            finally:
                for _ in batch:
                    self._queue.task_done()
        if db is not None:
            db.close()

    def _open(self) -> Database | None:
        """The writer's connection, opened at its first batch (a server that decides nothing makes no
        file); None when the store cannot be opened (logged; the next batch tries again)."""
        try:
            return connect(self.target, busy_timeout_s=WRITER_BUSY_TIMEOUT_S, synchronous="NORMAL")
        except (OutcomeError, OSError) as exc:
            log.error("decisions cannot be stored: %s", exc)
            return None

    def _done(self, decisions: list[Decision], stored: bool) -> None:
        """The batch is committed, or dropped (a failure is logged and the writer goes on)."""
        with self._lock:
            for d in decisions:
                self._pending.pop(d.id, None)
            if not stored:
                self.dropped += len(decisions)

    def _logged(self, work, *args, what: str) -> bool:
        """Run `work(*args)`; False when it failed, which is logged (a thread's exception would go nowhere)."""
        try:
            work(*args)
            return True
        except Exception as exc:
            expected = isinstance(exc, (*driver_errors(), OutcomeError))  # a busy or broken store: no traceback
            log.error("%s in %s failed: %s", what, self.location, exc, exc_info=not expected)
            return False

    def _prune(self, db: Database) -> None:
        """Delete expired decisions, then the oldest beyond `max_rows`, a chunk per transaction."""
        cutoff = self._cutoff()
        self._delete_chunks(db, "SELECT seq FROM decisions WHERE created < ? LIMIT ?", cutoff)
        top = db.execute("SELECT MAX(seq) FROM decisions").fetchone()[0]
        if top is not None and top > self.max_rows:  # rows above top - max_rows are at most max_rows
            self._delete_chunks(db, "SELECT seq FROM decisions WHERE seq <= ? ORDER BY seq LIMIT ?",
                                top - self.max_rows)

    @staticmethod
    def _delete_chunks(db: Database, select: str, bound) -> None:
        while True:
            with db.transaction():
                gone = db.execute(f"DELETE FROM decisions WHERE seq IN ({select})", (bound, PRUNE_CHUNK)).rowcount
            if gone < PRUNE_CHUNK:
                return
