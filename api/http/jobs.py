"""Asynchronous batch-plan jobs: a bounded queue, one worker thread, results kept for a while.

Kept in memory on purpose (a plan is cheap to recompute and holds no state worth a
database): at most `queue_limit` jobs wait or run at once (more get 429), at most `keep` jobs
are remembered (the oldest finished ones are evicted first), and a finished job is forgotten
`ttl_s` seconds after it ends. A restart loses all jobs.

A finished job keeps its answer as the JSON bytes GET /v1/plans/{id} sends, not as pydantic
objects (a 20,000-prompt plan's objects weigh ~10x its JSON), and all the answers kept weigh at
most `max_bytes`: past it the oldest finished jobs are evicted first.
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
    answer: bytes | None = None  # the result's JSON when done, the error's when failed

    @property
    def size(self) -> int:
        return len(self.answer) if self.answer is not None else 0


class PlanJobs:
    """Runs `plan(request)` for submitted requests in a background thread; thread-safe."""

    def __init__(self, plan: Callable[[PlanRequest], PlanResponse], *, queue_limit: int, keep: int, ttl_s: float,
                 max_bytes: int = 256 * 1024 * 1024, clock: Callable[[], float] = time.time):
        self._plan = plan
        self.queue_limit = queue_limit
        self.keep = keep
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self.kept_bytes = 0  # the answers' JSON bytes held, at most max_bytes
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

    def _find(self, job_id: str) -> _Job:
        self._expire()
        job = self._jobs.get(job_id)
        if job is None:
            raise HttpError(404, "not_found", f"no plan job {quoted(job_id)} (unknown, or expired "
                               f"{self.ttl_s:g} s after it finished)")
        return job

    def get(self, job_id: str) -> PlanJob:
        """The job with its result or error as objects (parsed from the kept JSON)."""
        with self._lock:
            job = self._find(job_id)
            view, answer = self._view(job), job.answer
        if answer is None:
            return view
        field, model = ("result", PlanResponse) if view.status == "done" else ("error", ErrorBody)
        return view.model_copy(update={field: model.model_validate_json(answer)})

    def get_json(self, job_id: str) -> bytes:
        """The job as GET /v1/plans/{id} answers it: the kept JSON spliced in, never re-parsed."""
        with self._lock:
            job = self._find(job_id)
            view, answer = self._view(job), job.answer
        head = view.model_dump_json(exclude={"result", "error"}).encode()
        result, error = (answer, b"null") if view.status == "done" else (b"null", answer or b"null")
        return head[:-1] + b',"result":' + (result or b"null") + b',"error":' + error + b"}"

    def _run(self, job: _Job, request: PlanRequest) -> None:
        with self._lock:
            job.status, job.started_at = "running", self._clock()
        try:
            answer, failed = self._plan(request).model_dump_json().encode(), False
        except PickwiseError as exc:
            body = exc.body() if isinstance(exc, HttpError) else error_body(exc)
            answer, failed = ErrorBody.model_validate(body).model_dump_json().encode(), True
        except Exception as exc:  # a bug: keep the job readable rather than losing it
            answer = ErrorBody(error="internal_error", detail=f"unexpected {type(exc).__name__}: {exc}")
            answer, failed = answer.model_dump_json().encode(), True
        if len(answer) > self.max_bytes:
            answer, failed = ErrorBody(
                error="payload_too_large",
                detail=f"the plan's answer of {len(answer):,} bytes exceeds the {self.max_bytes:,} bytes "
                       "the server keeps for jobs; send a smaller batch").model_dump_json().encode(), True
        with self._lock:
            job.answer = answer
            job.status = "failed" if failed else "done"
            job.finished_at = self._clock()
            self.kept_bytes += job.size
            while self.kept_bytes > self.max_bytes and self._evict_oldest_finished(but=job):
                pass

    def _drop(self, job: _Job) -> None:
        del self._jobs[job.id]
        self.kept_bytes -= job.size

    def _expire(self) -> None:
        now = self._clock()
        for job in [j for j in self._jobs.values() if j.finished_at is not None and now - j.finished_at > self.ttl_s]:
            self._drop(job)

    def _evict_oldest_finished(self, but: _Job | None = None) -> bool:
        finished = [j for j in self._jobs.values() if j.finished_at is not None and j is not but]
        if finished:
            self._drop(min(finished, key=lambda j: j.finished_at))
        return bool(finished)

    def _view(self, job: _Job) -> PlanJob:
        return PlanJob(
            id=job.id, status=job.status, prompts=job.prompts, created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at,
            expires_at=None if job.finished_at is None else job.finished_at + self.ttl_s,
        )

    def shutdown(self) -> None:
        """Drop queued jobs and release the thread (a running plan finishes); a later submit restarts it."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
