"""Where plan jobs live: one SQLite file (WAL) that every worker process of a server opens.

`serve --workers N` runs N processes behind one port; a GET lands on any of them, so a job's state
and answer are rows here, not objects in the process that accepted it. Each row names its owner
(the process running it); that process holds an exclusive flock on `<file>-owners/<owner>.lock`
for as long as it may run jobs, and the kernel drops the lock when the process dies, however it
dies (no heartbeat for a long solve to starve). A reader that finds an active job whose owner's
lock is free marks it failed (`server_stopped`): a crashed worker never leaves a job 'running'.

SQLite's locks, and flock, hold between processes on one host: workers of one server, or servers
sharing $PICKWISE_HOME. Jobs are recomputable, so synchronous=NORMAL (a process crash loses no commit).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

from pickwise.api.http.errors import HttpError
from pickwise.registry.loader import pickwise_home
from pickwise.registry.sql import is_url, use_wal

JOBS_FILE = "jobs.sqlite"
BUSY_TIMEOUT_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS plan_jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,            -- queued | running | done | failed | cancelled
    prompts INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    owner TEXT NOT NULL,             -- the process that accepted the job and runs it
    pid INTEGER NOT NULL,            -- that process's id, for messages
    busy INTEGER NOT NULL,           -- 1 while its owner may still work on it (a cancelled running job too)
    answer BLOB,                     -- the result's JSON when done, the error's when failed or cancelled
    size INTEGER NOT NULL DEFAULT 0  -- len(answer)
);
CREATE INDEX IF NOT EXISTS plan_jobs_busy ON plan_jobs (busy, owner);
CREATE INDEX IF NOT EXISTS plan_jobs_finished ON plan_jobs (finished_at)
"""


def default_jobs_path(outcome_store: str | None) -> Path:
    """Beside the outcome store file (so servers sharing a store file share jobs too), else
    $PICKWISE_HOME/jobs.sqlite (the store is a Postgres URL, or the default file there)."""
    if outcome_store is None or is_url(outcome_store):
        return pickwise_home() / JOBS_FILE
    return Path(outcome_store).resolve().with_name(JOBS_FILE)


@contextlib.contextmanager
def usable(path: Path) -> Iterator[None]:
    """A file that is not a jobs database, or stays locked past the busy timeout, is a 503 naming it."""
    try:
        yield
    except sqlite3.Error as exc:
        raise HttpError(503, "store_unavailable", f"the plan job store {path} cannot be used now ({exc})",
                        headers={"Retry-After": "5"}) from None


def connect(path: Path) -> sqlite3.Connection:
    """The jobs file, created with its table when new; autocommit (writes go in `transaction`)."""
    with usable(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        try:
            use_wal(db, BUSY_TIMEOUT_S)
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, its write lock taken up front (IMMEDIATE): a count and the insert it
    allows cannot interleave with another worker's."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def owners_folder(jobs_path: Path) -> Path:
    return jobs_path.with_name(jobs_path.name + "-owners")


def _lock_file(folder: Path, owner: str) -> Path:
    return folder / f"{owner}.lock"


def owner_alive(folder: Path, owner: str) -> bool:
    """Whether the process that took `owner` still holds its lock."""
    try:
        fd = os.open(_lock_file(folder, owner), os.O_RDWR)
    except FileNotFoundError:
        return False  # released, or removed by whoever found it dead
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock, had we got it
    return False


def forget_owner(folder: Path, owner: str) -> None:
    """Remove a dead owner's lock file (once its jobs are marked failed)."""
    with contextlib.suppress(FileNotFoundError):
        _lock_file(folder, owner).unlink()


class OwnerLock:
    """This process's sign of life to the others: an flock held on a lock file of its own, under a
    fresh owner id (never reused, so a lock released and a reader's check cannot cross)."""

    def __init__(self, jobs_path: Path):
        self.folder = owners_folder(jobs_path)
        self.owner = uuid.uuid4().hex
        self.pid = os.getpid()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(_lock_file(self.folder, self.owner), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self._fd is not None:
            forget_owner(self.folder, self.owner)
            os.close(self._fd)
            self._fd = None
