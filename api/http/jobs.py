"""Asynchronous batch-plan jobs, shared by every worker process of a server (api/http/job_store.py).

The worker that accepts a job runs it, on one background thread of its own, and writes its state to
the jobs file; any worker answers GET and DELETE from the file. Bounds hold across the workers: at
most `queue_limit` jobs queued or running (more get 429), at most `keep` jobs remembered (the
oldest finished ones are deleted first), a finished job is forgotten `ttl_s` seconds after it ends,
and finished jobs' answers weigh at most `max_bytes` (oldest deleted first; an answer alone larger
fails its job). A finished job keeps its answer as the JSON bytes GET sends, never re-parsed.

Cancelling (DELETE): a queued job is cancelled at once and never runs. A running one is marked
cancelled at once; its plan stops before its next chunk of prompts to encode (`plan`'s `stop`), or,
once encoding is done, its answer is discarded when the solver ends (scipy's HiGHS takes no
callback; its time limit is fixed when it starts); until it stops it still counts against
`queue_limit`. A finished job cannot be cancelled (409).
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from pickwise.api.errors import error_body, quoted
from pickwise.api.http.errors import HttpError
from pickwise.api.http.job_store import (
    OwnerLock,
    connect,
    forget_owner,
    owner_alive,
    owners_folder,
    transaction,
    usable,
)
from pickwise.api.schemas import ErrorBody, PlanJob, PlanRequest, PlanResponse
from pickwise.errors import PickwiseError

ACTIVE = ("queued", "running")
_COLUMNS = "id, status, prompts, created_at, started_at, finished_at, owner, pid"
_VIEW = f"SELECT {_COLUMNS} FROM plan_jobs WHERE id = ?"
_VIEW_ANSWER = f"SELECT {_COLUMNS}, answer FROM plan_jobs WHERE id = ?"  # status and answer in one read


def _error(code: str, detail: str) -> bytes:
    return ErrorBody(error=code, detail=detail).model_dump_json().encode()


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class PlanJobs:
    """Runs `plan(request)` for submitted requests in a background thread; thread-safe. `path`: the
    jobs file, made by the first submit (reads never create it)."""

    def __init__(self, plan: Callable[[PlanRequest, Callable[[], bool]], PlanResponse], *, path: str | Path,
                 queue_limit: int, keep: int,
                 ttl_s: float, max_bytes: int = 256 * 1024 * 1024, clock: Callable[[], float] = time.time):
        self._plan = plan
        self.path = Path(path)
        self.queue_limit = queue_limit
        self.keep = keep
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._owners = owners_folder(self.path)
        self._lock = threading.Lock()  # guards the connection, the owner lock and the executor
        self._db: sqlite3.Connection | None = None
        self._me: OwnerLock | None = None  # taken by the first submit, released by shutdown
        self._executor: ThreadPoolExecutor | None = None
        self._running: str | None = None  # the job this process's thread is planning
        self._closing = False

    # ---- the routes ------------------------------------------------------------------------------
    def submit(self, request: PlanRequest) -> PlanJob:
        """Queue the plan here (429 when `queue_limit` jobs are queued or running across every worker)."""
        with self._lock, usable(self.path):
            db = self._connected(create=True)
            if self._me is None:
                self._me = OwnerLock(self.path)
            self._closing = False  # submitting again after shutdown: this process owns jobs on
            now, job_id = self._clock(), uuid.uuid4().hex
            with transaction(db):
                self._reap(db)  # a dead worker's jobs stop counting
            with transaction(db):
                active = db.execute("SELECT COUNT(*) FROM plan_jobs WHERE busy = 1").fetchone()[0]
                if active >= self.queue_limit:
                    raise HttpError(429, "too_many_requests",
                                    f"{active} plan jobs are already queued or running (limit {self.queue_limit}, "
                                    "across every worker); retry when one finishes", headers={"Retry-After": "5"})
                self._expire(db, now)
                db.execute("DELETE FROM plan_jobs WHERE id IN (SELECT id FROM plan_jobs WHERE busy = 0 "
                           "ORDER BY finished_at DESC, rowid DESC LIMIT -1 OFFSET ?)", (max(self.keep - 1 - active, 0),))
                db.execute("INSERT INTO plan_jobs (id, status, prompts, created_at, owner, pid, busy) "
                           "VALUES (?, 'queued', ?, ?, ?, ?, 1)",
                           (job_id, len(request.prompts), now, self._me.owner, self._me.pid))
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pickwise-plan-job")
            self._executor.submit(self._run, job_id, request)
            return self._view(self._row(db, job_id))

    def get(self, job_id: str) -> PlanJob:
        """The job with its result or error as objects (parsed from the kept JSON)."""
        view, answer = self._find(job_id)
        if answer is None:
            return view
        field, model = ("result", PlanResponse) if view.status == "done" else ("error", ErrorBody)
        return view.model_copy(update={field: model.model_validate_json(answer)})

    def get_json(self, job_id: str) -> bytes:
        """The job as GET /v1/plans/{id} answers it: the kept JSON spliced in, never re-parsed."""
        view, answer = self._find(job_id)
        head = view.model_dump_json(exclude={"result", "error"}).encode()
        result, error = (answer, b"null") if view.status == "done" else (b"null", answer or b"null")
        return head[:-1] + b',"result":' + (result or b"null") + b',"error":' + error + b"}"

    def cancel(self, job_id: str) -> PlanJob:
        """Cancel a queued or running job (a cancelled one: as it is); 409 for a finished one."""
        with self._lock, usable(self.path):
            db = self._connected()
            if db is None:  # no job was ever submitted here
                self._live_row(db, job_id)
            with transaction(db):
                row = self._live_row(db, job_id)
                status, now = row[1], self._clock()
                if status in ("done", "failed"):
                    ended = "already ended" if status == "done" else "already failed"
                    raise HttpError(409, "conflict", f"plan job {quoted(job_id)} {ended} at {_when(row[5])}; a "
                                    f"finished job cannot be cancelled (it is forgotten at {_when(row[5] + self.ttl_s)})")
                if status in ACTIVE:
                    detail = f"cancelled at {_when(now)} by DELETE /v1/plans/{job_id}"
                    if status == "running":
                        detail += "; the plan was running: its answer is discarded when it ends"
                    answer = _error("cancelled", detail)
                    # a queued job never runs: its owner skips it; a running one stays busy until its plan ends
                    db.execute("UPDATE plan_jobs SET status = 'cancelled', finished_at = ?, answer = ?, size = ?, "
                               "busy = CASE status WHEN 'queued' THEN 0 ELSE busy END WHERE id = ?",
                               (now, answer, len(answer), job_id))
        return self.get(job_id)

    # ---- the worker thread ------------------------------------------------------------------------
    def _run(self, job_id: str, request: PlanRequest) -> None:
        with self._lock, usable(self.path):  # not queued any more (cancelled, or failed by shutdown): skipped
            if not self._db.execute("UPDATE plan_jobs SET status = 'running', started_at = ? WHERE id = ? AND "
                                    "status = 'queued'", (self._clock(), job_id)).rowcount:
                return
            self._running = job_id
        try:
            self._finish(job_id, *self._answer(request, lambda: self._cancelled(job_id)))
        finally:
            with self._lock:
                self._running = None
                if self._closing:
                    self._release()

    def _cancelled(self, job_id: str) -> bool:
        """Whether the running job has been cancelled (by any worker) since it started."""
        with self._lock, usable(self.path):
            row = self._db.execute("SELECT status FROM plan_jobs WHERE id = ?", (job_id,)).fetchone()
        return row is None or row[0] != "running"

    def _answer(self, request: PlanRequest, stop: Callable[[], bool]) -> tuple[bytes, bool]:
        """The plan's JSON, or its error's; and whether it failed."""
        try:
            answer, failed = self._plan(request, stop).model_dump_json().encode(), False
        except PickwiseError as exc:
            body = exc.body() if isinstance(exc, HttpError) else error_body(exc)
            answer, failed = ErrorBody.model_validate(body).model_dump_json().encode(), True
        except Exception as exc:  # a bug: keep the job readable rather than losing it
            answer, failed = _error("internal_error", f"unexpected {type(exc).__name__}: {exc}"), True
        if len(answer) > self.max_bytes:
            answer, failed = _error(
                "payload_too_large", f"the plan's answer of {len(answer):,} bytes exceeds the {self.max_bytes:,} "
                                     "bytes the server keeps for jobs; send a smaller batch"), True
        return answer, failed

    def _finish(self, job_id: str, answer: bytes, failed: bool) -> None:
        with self._lock, usable(self.path), transaction(self._db) as db:
            kept = db.execute("UPDATE plan_jobs SET status = ?, finished_at = ?, answer = ?, size = ?, busy = 0 "
                              "WHERE id = ? AND status = 'running'",
                              ("failed" if failed else "done", self._clock(), answer, len(answer), job_id)).rowcount
            if not kept:  # cancelled (or found orphaned) meanwhile: the answer goes
                db.execute("UPDATE plan_jobs SET busy = 0 WHERE id = ?", (job_id,))
            # the newest finished answers that fit max_bytes stay; older ones go
            db.execute("DELETE FROM plan_jobs WHERE id IN (SELECT id FROM (SELECT id, SUM(size) OVER "
                       "(ORDER BY finished_at DESC, rowid DESC) AS total FROM plan_jobs WHERE busy = 0) WHERE total > ?)",
                       (self.max_bytes,))

    # ---- reading the file ---------------------------------------------------------------------------
    def _connected(self, create: bool = False) -> sqlite3.Connection | None:
        if self._db is None:
            if not create and not self.path.is_file():
                return None
            self._db = connect(self.path)
        return self._db

    @staticmethod
    def _row(db: sqlite3.Connection, job_id: str) -> tuple | None:
        return db.execute(_VIEW, (job_id,)).fetchone()

    def _live_row(self, db: sqlite3.Connection | None, job_id: str) -> tuple:
        """The job's row, its owner checked when it is active; 404 when unknown or expired."""
        row = None if db is None else self._row(db, job_id)
        if row is not None and row[1] in ACTIVE and not self._owned_alive(row[6]):
            with contextlib.nullcontext() if db.in_transaction else transaction(db):
                self._reap(db, row[6])
            row = self._row(db, job_id)
        if row is None or (row[5] is not None and self._clock() - row[5] > self.ttl_s):
            raise HttpError(404, "not_found", f"no plan job {quoted(job_id)} (unknown, or expired "
                                              f"{self.ttl_s:g} s after it finished)")
        return row

    def _find(self, job_id: str) -> tuple[PlanJob, bytes | None]:
        with self._lock, usable(self.path):
            db = self._connected()
            self._live_row(db, job_id)  # 404, or an active job's owner checked
            # another worker may finish the job meanwhile: its status and answer are read together, or a
            # plan's result could be read as the error of a job still seen running
            row = db.execute(_VIEW_ANSWER, (job_id,)).fetchone()
            if row is None:  # forgotten meanwhile
                self._live_row(db, job_id)
        return self._view(row), row[-1]

    def _view(self, row: tuple) -> PlanJob:
        job_id, status, prompts, created, started, finished = row[:6]
        return PlanJob(id=job_id, status=status, prompts=prompts, created_at=created, started_at=started,
                       finished_at=finished, expires_at=None if finished is None else finished + self.ttl_s)

    # ---- owners that are gone -------------------------------------------------------------------
    def _owned_alive(self, owner: str) -> bool:
        if self._me is not None and owner == self._me.owner:
            return True
        return owner_alive(self._owners, owner)

    def _reap(self, db: sqlite3.Connection, owner: str | None = None) -> None:
        """Fail the active jobs of `owner` (else of every owner with busy jobs) whose process is gone."""
        owners = [owner] if owner else [o for (o,) in db.execute("SELECT DISTINCT owner FROM plan_jobs WHERE busy = 1")]
        for gone in [o for o in owners if not self._owned_alive(o)]:
            now = self._clock()
            for job_id, status, pid in db.execute("SELECT id, status, pid FROM plan_jobs WHERE owner = ? AND "
                                                  "status IN ('queued', 'running')", (gone,)).fetchall():
                answer = _error("server_stopped", f"the server process (pid {pid}) that "
                                f"{'ran' if status == 'running' else 'queued'} this job stopped before it finished "
                                "(it crashed or was restarted); submit the plan again")
                db.execute("UPDATE plan_jobs SET status = 'failed', finished_at = ?, answer = ?, size = ? "
                           "WHERE id = ?", (now, answer, len(answer), job_id))
            db.execute("UPDATE plan_jobs SET busy = 0 WHERE owner = ?", (gone,))
            forget_owner(self._owners, gone)

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM plan_jobs WHERE busy = 0 AND finished_at < ?", (now - self.ttl_s,))

    @property
    def kept_bytes(self) -> int:
        """The finished answers' JSON bytes kept in the file, at most max_bytes."""
        with self._lock, usable(self.path):
            db = self._connected()
            return 0 if db is None else db.execute("SELECT COALESCE(SUM(size), 0) FROM plan_jobs").fetchone()[0]

    # ---- lifetime -------------------------------------------------------------------------------------
    def _release(self) -> None:
        if self._me is not None:
            self._me.release()
            self._me = None

    def shutdown(self) -> None:
        """Fail this process's queued jobs and release the thread; a running plan finishes and is kept,
        then this process stops owning jobs. A later submit starts again under a new owner."""
        with self._lock:
            executor, self._executor = self._executor, None
            if self._me is not None and self._db is not None:
                with usable(self.path), transaction(self._db) as db:
                    answer = _error("server_stopped", f"the server process (pid {self._me.pid}) that queued this "
                                                      "job stopped before running it; submit the plan again")
                    db.execute("UPDATE plan_jobs SET status = 'failed', finished_at = ?, answer = ?, size = ?, "
                               "busy = 0 WHERE owner = ? AND status = 'queued'",
                               (self._clock(), answer, len(answer), self._me.owner))
                self._closing = True
                if self._running is None:
                    self._release()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
