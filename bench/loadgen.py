"""A small HTTP load generator (asyncio, bench/http_client.py) that always stops by itself.

Two shapes of load:
- closed loop: `concurrency` clients, each sending its next request when the last one answered,
  until `total` requests are done or `max_seconds` have passed;
- open loop: requests started at a fixed `rate` for `seconds` (at most rate*seconds requests,
  at most `max_in_flight` at once), which is what "sustains N req/s" means: a slow server
  cannot slow the arrivals down and hide its queueing.

Only loopback addresses are accepted: this tool is for benchmarking a local server.
"""
from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from bench.http_client import LoopbackHttpClient, ProtocolError

REFUSED = "429"  # the status of a request the server shed (see api/batcher.py, max_queue)


@dataclass
class LoadResult:
    """Latency percentiles (ms) and throughput of one load run."""

    shape: str
    concurrency: int
    requests: int
    errors: int  # every answer but a 2xx (refusals included) and every failed request
    seconds: float
    throughput: float  # requests answered per second, whatever the status
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    refused: int = 0  # 429 answers: the server shed the request at once (its queue was full)
    goodput: float = 0.0  # 2xx answers per second
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _summarise(shape: str, concurrency: int, answers: list[tuple[str, float]], seconds: float) -> LoadResult:
    """Counts per status, and percentiles over the requests the server took on: a 429 is an instant
    refusal, and counting its few milliseconds would make an overloaded server look fast. Timeouts
    count with their full wait."""
    statuses = Counter(status for status, _ in answers)
    ordered = sorted(t for status, t in answers if status != REFUSED)
    errors = sum(n for s, n in statuses.items() if not s.startswith("2"))
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    return LoadResult(
        shape=shape, concurrency=concurrency, requests=len(answers), errors=errors, seconds=seconds,
        throughput=len(answers) / seconds if seconds > 0 else 0.0,
        p50_ms=_percentile(ordered, 0.50) * 1000, p90_ms=_percentile(ordered, 0.90) * 1000,
        p99_ms=_percentile(ordered, 0.99) * 1000, max_ms=(ordered[-1] * 1000) if ordered else float("nan"),
        refused=statuses.get(REFUSED, 0), goodput=ok / seconds if seconds > 0 else 0.0,
        statuses=dict(sorted(statuses.items())),
    )


async def _one(client: LoopbackHttpClient, path: str, body: dict, answers: list[tuple[str, float]],
               scheduled: float | None = None) -> None:
    """One POST, recorded as (status or error name, latency); latency counts from `scheduled` when
    given (open loop: no coordinated omission)."""
    start = time.perf_counter() if scheduled is None else scheduled
    try:
        key = str(await client.request("POST", path, body))
    except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
        key = type(exc).__name__
    answers.append((key, time.perf_counter() - start))


async def closed_loop(base_url: str, path: str, make_body: Callable[[int], dict], *, concurrency: int, total: int,
                      max_seconds: float, timeout: float = 10.0) -> LoadResult:
    """`concurrency` clients in lockstep with the server; stops after `total` requests or `max_seconds`."""
    answers: list[tuple[str, float]] = []
    counter = iter(range(total))
    async with LoopbackHttpClient(base_url, timeout=timeout) as client:  # one connection per worker
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            for i in counter:
                if time.perf_counter() >= deadline:
                    return
                await _one(client, path, make_body(i), answers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _summarise("closed", concurrency, answers, elapsed)


async def open_loop(base_url: str, path: str, make_body: Callable[[int], dict], *, rate: float, seconds: float,
                    max_in_flight: int = 512, timeout: float = 10.0) -> LoadResult:
    """Requests started every 1/rate s for `seconds`; late answers count with their full latency."""
    answers: list[tuple[str, float]] = []
    total = int(rate * seconds)
    gate = asyncio.Semaphore(max_in_flight)  # also bounds the client's connections
    async with LoopbackHttpClient(base_url, timeout=timeout) as client:
        start = time.perf_counter()
        tasks = []

        async def fire(i: int) -> None:
            async with gate:
                await _one(client, path, make_body(i), answers, scheduled=start + i / rate)

        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return _summarise("open", max_in_flight, answers, elapsed)


def median_result(results: list[LoadResult]) -> dict:
    """Per-figure medians over repeated runs (each figure separately)."""
    keys = ("requests", "errors", "seconds", "throughput", "p50_ms", "p90_ms", "p99_ms", "max_ms", "refused", "goodput")
    return {k: statistics.median(getattr(r, k) for r in results) for k in keys}
