"""MicroBatcher on its own, driving the tiny predictor's real prompt_vectors."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from pickwise.api.http.batcher import MicroBatcher, QueueFull


def _recording(predictor, calls: list[int]):
    def encode(prompts, single_thread=False):
        calls.append(len(prompts))
        return predictor.prompt_vectors(prompts)
    return encode


def test_concurrent_submissions_share_one_call_and_get_their_own_vectors(tiny_predictor):
    prompts = [f"What is {i} times {i} plus 3?" for i in range(10)]
    calls: list[int] = []
    observed: list[int] = []

    async def main():
        batcher = MicroBatcher(_recording(tiny_predictor, calls), max_batch=32, max_wait_ms=50,
                               observe=lambda size, seconds: observed.append(size))
        try:
            return await asyncio.gather(*(batcher.submit(p) for p in prompts))
        finally:
            await batcher.aclose()

    results = asyncio.run(main())
    assert calls == [10] and observed == [10]
    expected, _ = tiny_predictor.prompt_vectors(prompts)
    for (vector, truncated), row in zip(results, expected):
        np.testing.assert_allclose(vector, row, rtol=1e-5, atol=1e-6)
        assert truncated is False


def test_batches_are_capped_at_max_batch(tiny_predictor):
    calls: list[int] = []

    async def main():
        batcher = MicroBatcher(_recording(tiny_predictor, calls), max_batch=4, max_wait_ms=50)
        try:
            await asyncio.gather(*(batcher.submit(f"prompt {i}") for i in range(10)))
        finally:
            await batcher.aclose()

    asyncio.run(main())
    assert sum(calls) == 10 and max(calls) <= 4 and len(calls) == 3


def test_a_lone_request_waits_at_most_max_wait(tiny_predictor):
    calls: list[int] = []

    async def main():
        batcher = MicroBatcher(_recording(tiny_predictor, calls), max_batch=32, max_wait_ms=20)
        loop = asyncio.get_running_loop()
        try:
            start = loop.time()
            await batcher.submit("alone")
            return loop.time() - start
        finally:
            await batcher.aclose()

    elapsed = asyncio.run(main())
    assert calls == [1] and 0.015 <= elapsed < 2.0


def test_with_no_wait_prompts_arriving_during_an_encode_form_the_next_batch(tiny_predictor):
    """max_wait_ms=0 (the service default): the first prompt goes alone at once, the five that
    arrive while it is being encoded go together in the next call."""
    calls: list[int] = []
    release = threading.Event()
    record = _recording(tiny_predictor, calls)

    def slow(prompts, single_thread=False):
        release.wait(timeout=10)  # the first batch stays "in the encoder" until the test lets it go
        return record(prompts)

    async def main():
        batcher = MicroBatcher(slow, max_batch=32, max_wait_ms=0)
        try:
            first = asyncio.ensure_future(batcher.submit("first"))
            await asyncio.sleep(0.05)  # the worker has taken "first" at once and is blocked in `slow`
            assert calls == [] and batcher._pending == []
            later = [asyncio.ensure_future(batcher.submit(f"later {i}")) for i in range(5)]
            await asyncio.sleep(0.05)
            release.set()
            return await first, await asyncio.gather(*later)
        finally:
            await batcher.aclose()

    first, later = asyncio.run(main())
    assert calls == [1, 5]
    expected, _ = tiny_predictor.prompt_vectors(["first"] + [f"later {i}" for i in range(5)])
    np.testing.assert_allclose(np.stack([first[0]] + [v for v, _ in later]), expected, rtol=1e-5, atol=1e-6)


def test_an_encoder_error_reaches_every_caller_and_the_worker_survives(tiny_predictor):
    def flaky(prompts, single_thread=False):
        if any("boom" in p for p in prompts):
            raise RuntimeError("encoder failed")
        return tiny_predictor.prompt_vectors(prompts)

    async def main():
        batcher = MicroBatcher(flaky, max_batch=8, max_wait_ms=20)
        try:
            failed = await asyncio.gather(batcher.submit("boom"), batcher.submit("fine"), return_exceptions=True)
            ok = await batcher.submit("fine again")
            return failed, ok
        finally:
            await batcher.aclose()

    failed, ok = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) for e in failed)
    assert ok[0].shape == (tiny_predictor.model.config.dim,)


def test_the_batcher_restarts_on_a_new_event_loop(tiny_predictor):
    batcher = MicroBatcher(tiny_predictor.prompt_vectors, max_batch=4, max_wait_ms=1)
    for _ in range(2):  # e.g. two test clients in a row on the same app
        vector, _ = asyncio.run(batcher.submit("hello"))
        assert vector.shape == (tiny_predictor.model.config.dim,)

    async def close():
        await batcher.aclose()

    asyncio.run(close())


def test_a_full_queue_refuses_at_once_and_callers_that_left_free_their_place(tiny_predictor):
    """max_queue bounds the prompts waiting behind the encoder: the next submit raises QueueFull
    without waiting, cancelled (disconnected) callers do not count, and admitted prompts still
    get their vectors."""
    calls: list[int] = []
    release = threading.Event()
    record = _recording(tiny_predictor, calls)

    def slow(prompts, single_thread=False):
        release.wait(timeout=10)
        return record(prompts)

    async def main():
        batcher = MicroBatcher(slow, max_batch=32, max_wait_ms=0, max_queue=3)
        try:
            busy = asyncio.ensure_future(batcher.submit("in the encoder"))  # taken at once: not queued
            await asyncio.sleep(0.05)
            queued = [asyncio.ensure_future(batcher.submit(f"queued {i}")) for i in range(3)]
            await asyncio.sleep(0)
            with pytest.raises(QueueFull, match=r"3 prompts are already waiting .* at most 3") as refused:
                await batcher.submit("one too many")
            assert (refused.value.waiting, refused.value.limit) == (3, 3)
            queued[0].cancel()  # that client hung up: its place is free again
            await asyncio.sleep(0)
            late = asyncio.ensure_future(batcher.submit("late"))
            await asyncio.sleep(0)
            release.set()
            return await busy, await asyncio.gather(*queued[1:], late)
        finally:
            await batcher.aclose()

    busy, admitted = asyncio.run(main())
    assert calls == [1, 3]  # the refused prompt and the cancelled one were never encoded
    expected, _ = tiny_predictor.prompt_vectors(["queued 1", "queued 2", "late"])
    np.testing.assert_allclose(np.stack([v for v, _ in admitted]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_wait_ms": -1}, {"max_queue": 0}, {"lanes": 0}])
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        MicroBatcher(lambda p: (np.zeros((len(p), 2)), [False] * len(p)), **kwargs)


def _held_lanes(tiny_predictor, calls: list[dict], release: threading.Event):
    """An encoder that records each call (size, single_thread, thread, start, end) and holds the
    calls until `release` is set."""
    def encode(prompts, single_thread=False):
        start = time.perf_counter()
        release.wait(timeout=10)
        time.sleep(0.05)  # long enough for calls on two lanes to overlap
        out = tiny_predictor.prompt_vectors(prompts)
        calls.append({"size": len(prompts), "single_thread": single_thread, "thread": threading.current_thread().name,
                      "start": start, "end": time.perf_counter()})
        return out
    return encode


def test_two_lanes_a_lone_prompt_gets_every_thread_and_the_rest_share_the_lanes(tiny_predictor):
    """A lone prompt on idle lanes runs on all the encoder's threads and holds back the other lane;
    the four prompts that arrive meanwhile are split over both lanes, which run side by side,
    each on one thread."""
    calls: list[dict] = []
    release = threading.Event()

    async def main():
        batcher = MicroBatcher(_held_lanes(tiny_predictor, calls, release), max_batch=32, max_wait_ms=0, lanes=2)
        try:
            first = asyncio.ensure_future(batcher.submit("first"))
            await asyncio.sleep(0.05)
            later = [asyncio.ensure_future(batcher.submit(f"later {i}")) for i in range(4)]
            await asyncio.sleep(0.05)
            assert batcher._busy == 1 and len(batcher._pending) == 4  # the other lane waits for the lone prompt
            release.set()
            return await first, await asyncio.gather(*later)
        finally:
            await batcher.aclose()

    first, later = asyncio.run(main())
    lone, a, b = calls[0], *sorted(calls[1:], key=lambda c: c["start"])
    assert (lone["size"], lone["single_thread"]) == (1, False)
    assert [(a["size"], a["single_thread"]), (b["size"], b["single_thread"])] == [(2, True), (2, True)]
    assert a["thread"] != b["thread"] and b["start"] < a["end"]  # side by side
    expected, _ = tiny_predictor.prompt_vectors(["first"] + [f"later {i}" for i in range(4)])
    np.testing.assert_allclose(np.stack([first[0]] + [v for v, _ in later]), expected, rtol=1e-5, atol=1e-6)


def test_one_lane_runs_every_batch_on_every_thread_one_at_a_time(tiny_predictor):
    calls: list[dict] = []
    release = threading.Event()
    release.set()

    async def main():
        batcher = MicroBatcher(_held_lanes(tiny_predictor, calls, release), max_batch=2, max_wait_ms=0, lanes=1)
        try:
            await asyncio.gather(*(batcher.submit(f"p{i}") for i in range(5)))
        finally:
            await batcher.aclose()

    asyncio.run(main())
    assert sum(c["size"] for c in calls) == 5 and not any(c["single_thread"] for c in calls)
    ordered = sorted(calls, key=lambda c: c["start"])
    assert all(x["end"] <= y["start"] for x, y in zip(ordered, ordered[1:]))  # never two at once


def test_lanes_are_read_when_the_worker_starts(tiny_predictor):
    """The service learns its predictor's lanes only after loading it: a callable is asked at start."""
    asked = []

    def lanes():
        asked.append(True)
        return 2

    batcher = MicroBatcher(lambda p, single_thread=False: tiny_predictor.prompt_vectors(p), lanes=lanes)
    assert asked == []

    async def main():
        try:
            await batcher.submit("hello")
            return batcher.lanes
        finally:
            await batcher.aclose()

    assert asyncio.run(main()) == 2 and asked == [True]
