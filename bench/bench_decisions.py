"""What keeping a decision costs the request path: `DecisionStore.record` (a queue put) against writing
the decision inline, one INSERT + COMMIT per select, as the request path would without the writer
thread (synchronous=NORMAL, and FULL as outcomes are written), on a store file in a temporary folder.

Run:  .venv/bin/python -m bench.bench_decisions [--n 5000]
Prints per-call medians and p99s in microseconds and writes bench/results/decisions.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pickwise.registry.decisions import _INSERT, Decision, DecisionStore
from pickwise.registry.outcomes import connect, prompt_sha256, utc_timestamp

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "Which of these numbers is prime? A) 4 B) 6 C) 7 D) 9 " * 8  # ~400 characters
U = np.random.default_rng(0).standard_normal(64).astype(np.float32)  # the shipped artifact's dim


def _summary(seconds: list[float]) -> dict:
    us = sorted(s * 1e6 for s in seconds)
    return {"median_us": round(statistics.median(us), 1), "p99_us": round(us[int(0.99 * (len(us) - 1))], 1)}


def queued(path: Path, n: int) -> dict:
    store = DecisionStore(path)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        store.record(PROMPT, ["gpt-3.5-turbo-1106"], U, "enc")
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    store.close()
    return {**_summary(times), "drain_s": round(time.perf_counter() - started, 3), "dropped": store.dropped}


def inline(path: Path, n: int, synchronous: str) -> dict:
    db = connect(path, synchronous=synchronous)
    times = []
    for i in range(n):
        started = time.perf_counter()
        row = Decision(f"{synchronous}-{i}", ("gpt-3.5-turbo-1106",), PROMPT, prompt_sha256(PROMPT), U, "enc",
                       utc_timestamp()).row()
        with db.transaction():
            db.execute(_INSERT, row)
        times.append(time.perf_counter() - started)
    db.close()
    return _summary(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {"record (queued)": queued(Path(tmp) / "q.sqlite", args.n),
                   "inline, synchronous=NORMAL": inline(Path(tmp) / "n.sqlite", args.n, "NORMAL"),
                   "inline, synchronous=FULL": inline(Path(tmp) / "f.sqlite", min(args.n, 1000), "FULL")}
    for name, figures in results.items():
        print(f"{name:30s} " + "  ".join(f"{k} {v}" for k, v in figures.items()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decisions.json").write_text(json.dumps(
        {"machine": f"{platform.machine()}, Python {platform.python_version()}", "n": args.n, "results": results},
        indent=2) + "\n")


if __name__ == "__main__":
    main()
