"""The outcome store on its two backends: a SQLite file and a Postgres server (pgserver's, on a local
socket, in a temporary folder), each timed on what `outcomes import` and `pickwise fit` ask of it.

- import: `OutcomeStore.add` of N outcomes in one transaction (what `outcomes import` does once the
  file is parsed; parsing is the same work on either backend);
- fit read: `predictor.refit.read_outcomes` (every outcome, oldest first, models resolved) plus
  `cached_features` of every prompt: the store's whole part of a fit whose prompts are encoded
  already (the encoder's time, the same on both, is left out);
- cache write: `cache_features` of every prompt (a first fit's writes after encoding).

N outcomes are N/4 prompts x 4 registry models; features are 481 float32 a prompt, the shipped
encoder's u, task mix and pooled vector. Each figure is the median of --runs runs on fresh stores.

Run:  .venv/bin/python -m bench.bench_store [--n 100000] [--runs 3]
Writes bench/results/store.json and store.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from pickwise.predictor.refit import read_outcomes
from pickwise.registry import default_registry_dir, load_registry
from pickwise.registry.outcomes import Outcome, OutcomeStore, prompt_sha256, utc_timestamp

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("gpt-4-1106-preview", "gpt-3.5-turbo-1106", "claude-v2", "Llama-2-7b-hf")
FEATURES = 64 + 33 + 384
ENCODER = "bench-encoder"


def outcomes(n: int) -> tuple[list[Outcome], dict[str, bytes]]:
    rng = np.random.default_rng(0)
    n_prompts = n // len(MODELS)
    texts = [f"Question {i}: " + "explain the trade-off between latency and cost in detail. " * 6 for i in range(n_prompts)]
    rows = [Outcome(model=m, score=float(rng.integers(0, 2)), prompt=t, cost_usd=float(rng.random()) / 100,
                    latency_ms=float(rng.integers(100, 5000)), output_tokens=int(rng.integers(1, 900)),
                    timestamp=utc_timestamp(1.7e9 + i), tags={"app": "bench"})
            for i, t in enumerate(texts) for m in MODELS]
    features = {prompt_sha256(t): rng.standard_normal(FEATURES).astype("<f4").tobytes() for t in texts}
    return rows, features


def one_run(target: str, rows: list[Outcome], features: dict[str, bytes], snapshot) -> dict:
    with OutcomeStore(target) as store:
        started = time.perf_counter()
        store.add(rows)
        imported = time.perf_counter()
        store.cache_features(features, ENCODER)
        cached = time.perf_counter()
    with OutcomeStore(target) as store:  # a fit opens the store afresh
        started_read = time.perf_counter()
        read = read_outcomes(store, snapshot, ENCODER)
        found = store.cached_features(list(read.texts), ENCODER)
        done = time.perf_counter()
    assert len(read) == len(rows) and len(found) == len(features)
    return {"import_s": imported - started, "cache_write_s": cached - imported, "fit_read_s": done - started_read}


def postgres_url(server) -> str:
    """A fresh schema of the server for one run (a fresh store, as a new SQLite file is)."""
    import psycopg

    schema = "b" + uuid.uuid4().hex[:12]
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{server.get_uri()}&options=-csearch_path%3D{schema}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import pgserver

    snapshot = load_registry(default_registry_dir())
    rows, features = outcomes(args.n)
    runs: dict[str, list[dict]] = {"sqlite": [], "postgres": []}
    with tempfile.TemporaryDirectory() as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        try:
            for i in range(args.runs):
                runs["sqlite"].append(one_run(str(Path(tmp) / f"s{i}.sqlite"), rows, features, snapshot))
                runs["postgres"].append(one_run(postgres_url(server), rows, features, snapshot))
                print(i, {k: {f: round(v, 2) for f, v in r[-1].items()} for k, r in runs.items()}, flush=True)
        finally:
            server.cleanup()
    medians = {backend: {f: round(statistics.median(r[f] for r in results), 3) for f in results[0]}
               for backend, results in runs.items()}
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store.json").write_text(json.dumps(
        {"machine": machine, "n": args.n, "prompts": len(features), "runs": args.runs, "median": medians,
         "all_runs": {k: [{f: round(v, 3) for f, v in r.items()} for r in rs] for k, rs in runs.items()}},
        indent=2) + "\n")
    lines = [f"# Outcome store: {args.n:,} outcomes ({len(features):,} prompts), median of {args.runs} runs",
             "", f"{machine}; Postgres: pgserver's, local socket.", "",
             "| backend | import (s) | fit read (s) | feature cache write (s) |", "|---|---|---|---|"]
    lines += [f"| {b} | {m['import_s']:.2f} | {m['fit_read_s']:.2f} | {m['cache_write_s']:.2f} |"
              for b, m in medians.items()]
    (RESULTS / "store.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
