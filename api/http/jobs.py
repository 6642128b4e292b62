"""Asynchronous batch-plan jobs: a bounded queue, one worker thread, results kept for a while.

Kept in memory on purpose (a plan is cheap to recompute and holds no state worth a
database): at most `queue_limit` jobs wait or run at once (more get 429), at most `keep` jobs
are remembered (the oldest finished ones are evicted first), and a finished job is forgotten
`ttl_s` seconds after it ends. A restart loses all jobs.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pickwise.api.errors import error_body, quoted
from pickwise.api.http.errors import HttpError
from pickwise.api.schemas import ErrorBody, PlanJob, PlanRequest, PlanResponse
from pickwise.errors import PickwiseError


@dataclass
class _Job:
    id: str
    prompts: int
    created_at: float
    status: str = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    result: PlanResponse | None = None
    error: ErrorBody | None = None


class PlanJobs:
    """Runs `plan(request)` for submitted requests in a background thread; thread-safe."""

    def __init__(self, plan: Callable[[PlanRequest], PlanResponse], *, queue_limit: int, keep: int, ttl_s: float,
                 clock: Callable[[], float] = time.time):
        self._plan = plan
        self.queue_limit = queue_limit
        self.keep = keep
        self.ttl_s = ttl_s
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, request: PlanRequest) -> PlanJob:
        with self._lock:
            self._expire()
            active = sum(j.status in ("queued", "running") for j in self._jobs.values())
            if active >= self.queue_limit:
                raise HttpError(429, "too_many_requests",
                                   f"{active} plan jobs are already queued or running (limit {self.queue_limit}); "
                                   "retry when one finishes", headers={"Retry-After": "5"})
            if len(self._jobs) >= self.keep:
                self._evict_oldest_finished()
            job = _Job(id=uuid.uuid4().hex, prompts=len(request.prompts), created_at=self._clock())
            self._jobs[job.id] = job
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pickwise-plan-job")
            self._executor.submit(self._run, job, request)
        return self._view(job)

    def get(self, job_id: str) -> PlanJob:
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
            if job is None:
                raise HttpError(404, "not_found", f"no plan job {quoted(job_id)} (unknown, or expired "
                                   f"{self.ttl_s:g} s after it finished)")
            return self._view(job)

    def _run(self, job: _Job, request: PlanRequest) -> None:
        with self._lock:
            job.status, job.started_at = "running", self._clock()
        try:
            result, error = self._plan(request), None
        except PickwiseError as exc:
            body = exc.body() if isinstance(exc, HttpError) else error_body(exc)
            result, error = None, ErrorBody.model_validate(body)
        except Exception as exc:  # a bug: keep the job readable rather than losing it
            result, error = None, ErrorBody(error="internal_error", detail=f"unexpected {type(exc).__name__}: {exc}")
        with self._lock:
            job.result, job.error = result, error
            job.status = "done" if error is None else "failed"
            job.finished_at = self._clock()

    def _expire(self) -> None:
        now = self._clock()
        for job_id in [j.id for j in self._jobs.values() if j.finished_at is not None and now - j.finished_at > self.ttl_s]:
            del self._jobs[job_id]

    def _evict_oldest_finished(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        if finished:
            del self._jobs[min(finished, key=lambda j: j.finished_at).id]

    def _view(self, job: _Job) -> PlanJob:
        return PlanJob(
            id=job.id, status=job.status, prompts=job.prompts, created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at,
            expires_at=None if job.finished_at is None else job.finished_at + self.ttl_s,
            result=job.result, error=job.error,
        )

    def shutdown(self) -> None:
        """Drop queued jobs and release the thread (a running plan finishes); a later submit restarts it."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
