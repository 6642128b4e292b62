"""Micro-batching of prompt encodings across concurrent requests.

The transformer forward pass costs nearly the same for 1 prompt as for 16 short ones on a CPU
(it is dominated by per-call overhead and weight reads), so under load it pays to gather the
prompts of concurrent requests and encode them in one call. A prompt waits at most
`max_wait_ms` (counted from its arrival) for others to join, a batch holds at most
`max_batch` prompts, and with one lane (torch encoders) one batch runs at a time in a dedicated
worker thread (in the service, its one encoder thread, which batch plans use too) while the next
one gathers on the event loop.

The service's default wait is 0, continuous batching: a prompt that finds the encoder idle
goes at once (a lone client never waits), and the prompts that arrive while a batch is being
encoded form the next one, so batches still grow with the load (docs/decisions/continuous-batching.md).

With `lanes` > 1 (the int8 ONNX encoder, whose single-thread runs can go side by side) up to
that many batches are encoded at once, each on one thread of its own: on 2 cores two 1-thread
runs cost less CPU per prompt than one 2-thread run, whose threads wait for each other whenever
the event loop takes a core. A lone prompt with every lane idle still runs on all the encoder's
threads (the lowest latency for a lone client), and while it runs no other batch starts.

Under overload the queue is bounded (`max_queue` prompts waiting): past it, `submit` raises
`QueueFull` at once and the service answers 429, rather than letting every request queue for
seconds until clients time out (an open-loop load above capacity did exactly that before).
"""
from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pickwise.errors import PickwiseError

Encode = Callable[..., tuple]  # encode(prompts, single_thread=bool) -> (rows indexable per prompt, truncated)
Observe = Callable[[int, float], None]


class QueueFull(PickwiseError):
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
                 executor: ThreadPoolExecutor | None = None, lanes: int | Callable[[], int] = 1):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be >= 1 or None (unbounded), got {max_queue}")
        if isinstance(lanes, int) and lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._observe = observe
        # an int, or a function read when the worker starts (the service knows its predictor's
        # lanes only once it has loaded, and the first submit comes after that)
        self._lanes_source = lanes
        self.lanes = 1
        # a caller's executor (the service's one encoder thread) runs lane 0 and is never shut
        # down here; the other lanes get threads of their own
        self._shared = executor
        self._owned: list[ThreadPoolExecutor] = []
        self._idle_threads: list[ThreadPoolExecutor] = []
        self._busy = 0  # batches being encoded
        self._all_threads_busy = False  # a lone prompt is running on every encoder thread
        self._pending: list[_Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._in_flight: set[asyncio.Task] = set()
        self._has_work: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._lane_free: asyncio.Event | None = None

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
        lanes = self._lanes_source() if callable(self._lanes_source) else self._lanes_source
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self._release_threads()
        self.lanes = lanes
        self._owned = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pickwise-encode-lane{i}")
                       for i in range(0 if self._shared is None else 1, lanes)]
        self._idle_threads = ([self._shared] if self._shared is not None else []) + self._owned
        self._busy, self._all_threads_busy, self._in_flight = 0, False, set()
        self._pending = []
        self._has_work, self._full, self._lane_free = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._task = loop.create_task(self._run(), name="pickwise-micro-batcher")

    async def _wait_for_lane(self) -> None:
        """Until a lane is free, and no lone prompt holds every encoder thread."""
        while self._busy >= self.lanes or self._all_threads_busy:
            self._lane_free.clear()
            await self._lane_free.wait()

    async def _gather(self) -> list[_Pending]:
        """The next batch: wait for work, then for a full batch or the oldest prompt's deadline.

        With several lanes free, the waiting prompts are shared between them (each lane takes its
        share now, the next lanes take the rest at once)."""
        await self._has_work.wait()
        if len(self._pending) < self.max_batch:
            remaining = self._pending[0].arrived + self.max_wait - time.monotonic()
            if remaining > 0:
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        share = -(-len(self._pending) // (self.lanes - self._busy))  # ceil: a fair share per free lane
        take = min(self.max_batch, share)
        batch, self._pending = self._pending[:take], self._pending[take:]
        if not self._pending:
            self._has_work.clear()
        if len(self._pending) < self.max_batch:
            self._full.clear()
        return [p for p in batch if not p.future.done()]  # skip requests whose client went away

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_lane()
            batch = await self._gather()
            if not batch:
                continue
            # one lane: every batch runs on all the encoder's threads, as a lone prompt on idle lanes does
            all_threads = self.lanes == 1 or (self._busy == 0 and len(batch) == 1 and not self._pending)
            thread = self._idle_threads.pop()
            self._busy += 1
            self._all_threads_busy = all_threads and self.lanes > 1
            task = loop.create_task(self._encode_batch(batch, thread, single_thread=not all_threads))
            self._in_flight.add(task)  # the next batch gathers while this one runs

    async def _encode_batch(self, batch: list[_Pending], thread: ThreadPoolExecutor, single_thread: bool) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            vectors, truncated = await loop.run_in_executor(
                thread, functools.partial(self._encode, [p.prompt for p in batch], single_thread=single_thread))
        except asyncio.CancelledError:  # aclose: its callers are cancelled with it
            for p in batch:
                p.future.cancel()
            raise
        except Exception as exc:  # the callers get the error; the worker keeps serving
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        else:
            if self._observe is not None:
                self._observe(len(batch), time.perf_counter() - started)
            for i, p in enumerate(batch):
                if not p.future.done():
                    p.future.set_result((vectors[i], bool(truncated[i])))
        finally:
            self._busy -= 1
            self._all_threads_busy = False
            self._idle_threads.append(thread)
            self._in_flight.discard(asyncio.current_task())
            self._lane_free.set()

    async def aclose(self) -> None:
        """Stop the worker (pending callers are cancelled) and release its threads; a later submit restarts it."""
        for task in [self._task, *self._in_flight]:
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._task, self._in_flight = None, set()
        for p in self._pending:
            p.future.cancel()
        self._pending = []
        self._release_threads()

    def _release_threads(self) -> None:
        for thread in self._owned:
            thread.shutdown(wait=False)
        self._owned, self._idle_threads = [], []
