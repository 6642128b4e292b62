"""Micro-batching of prompt encodings across concurrent requests.

The transformer forward pass costs nearly the same for 1 prompt as for 16 short ones on a CPU
(it is dominated by per-call overhead and weight reads), so under load it pays to gather the
prompts of concurrent requests and encode them in one call. A prompt waits at most
`max_wait_ms` (counted from its arrival) for others to join, a batch holds at most
`max_batch` prompts, and one batch runs at a time in a dedicated worker thread (in the service,
its one encoder thread, which batch plans use too) while the next one gathers on the event loop.

The service's default wait is 0, continuous batching: a prompt that finds the encoder idle
goes at once (a lone client never waits), and the prompts that arrive while a batch is being
encoded form the next one, so batches still grow with the load (bench/bench_api.py).

Under overload the queue is bounded (`max_queue` prompts waiting): past it, `submit` raises
`QueueFull` at once and the service answers 429, rather than letting every request queue for
seconds until clients time out (an open-loop load above capacity did exactly that before).
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

Encode = Callable[[Sequence[str]], tuple[np.ndarray, list[bool]]]
Observe = Callable[[int, float], None]


class QueueFull(Exception):
    """The encoder's queue already holds `waiting` prompts, its bound: try again shortly."""

    def __init__(self, waiting: int, limit: int):
        super().__init__(f"{waiting} prompts are already waiting for the predictor (the queue holds at most {limit})")
        self.waiting = waiting
        self.limit = limit


@dataclass
class _Pending:
    prompt: str
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """`await submit(prompt)` -> (prompt vector, truncated); batches concurrent submissions.

    Bound to the event loop it is first used on; a new loop (a fresh test client) gets a
    fresh worker task.
    """

    def __init__(self, encode: Encode, *, max_batch: int = 32, max_wait_ms: float = 2.0,
                 max_queue: int | None = None, observe: Observe | None = None,
                 executor: ThreadPoolExecutor | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be >= 1 or None (unbounded), got {max_queue}")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._observe = observe
        # a caller's executor (the service's one encoder thread) is shared and never shut down here
        self._owns_executor = executor is None
        self._executor: ThreadPoolExecutor | None = executor
        self._pending: list[_Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._has_work: asyncio.Event | None = None
        self._full: asyncio.Event | None = None

    async def submit(self, prompt: str) -> tuple[np.ndarray, bool]:
        """The prompt's vector once its batch is encoded; QueueFull at once when the queue is at its bound."""
        self._ensure_worker()
        if self.max_queue is not None and len(self._pending) >= self.max_queue:
            # callers that hung up leave their entry behind until it is gathered; do not count them
            self._pending = [p for p in self._pending if not p.future.done()]
            if len(self._pending) >= self.max_queue:
                raise QueueFull(len(self._pending), self.max_queue)
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(prompt, future))
        self._has_work.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        return await future

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._task is not None and not self._task.done():
            return
        self._loop = loop
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pickwise-encode")
        self._pending = []
        self._has_work, self._full = asyncio.Event(), asyncio.Event()
        self._task = loop.create_task(self._run(), name="pickwise-micro-batcher")

    async def _gather(self) -> list[_Pending]:
        """The next batch: wait for work, then for a full batch or the oldest prompt's deadline."""
        await self._has_work.wait()
        if len(self._pending) < self.max_batch:
            remaining = self._pending[0].arrived + self.max_wait - time.monotonic()
            if remaining > 0:
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
        if not self._pending:
            self._has_work.clear()
        if len(self._pending) < self.max_batch:
            self._full.clear()
        return [p for p in batch if not p.future.done()]  # skip requests whose client went away

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                vectors, truncated = await loop.run_in_executor(self._executor, self._encode, [p.prompt for p in batch])
            except Exception as exc:  # the callers get the error; the worker keeps serving
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            if self._observe is not None:
                self._observe(len(batch), time.perf_counter() - started)
            for i, p in enumerate(batch):
                if not p.future.done():
                    p.future.set_result((vectors[i], bool(truncated[i])))

    async def aclose(self) -> None:
        """Stop the worker (pending callers are cancelled) and release the thread; a later submit restarts it."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        for p in self._pending:
            p.future.cancel()
        self._pending = []
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=False)
            self._executor = None
