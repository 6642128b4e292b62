"""Benchmark of the selector: batch budget planning (fast path, exact MILP, plain pulp + CBC),
time versus batch size, and per-request selection latency.

Synthetic but realistic instance: 25 models whose list prices span 100x and whose skill grows
with price (with noise); prompts differ in difficulty and domain, so qualities are correlated
across models and the best model differs by domain; cost = prompt tokens x input price +
expected output tokens x output price. The budget sits halfway between the cheapest plan and
the plan that sends every prompt to its best model, so it binds.

    .venv/bin/python -m bench.bench_selector            # full run (minutes; writes bench/results/selector.*)
    .venv/bin/python -m bench.bench_selector --quick    # small sizes, smoke test
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from pickwise.selector.batch import plan_batch  # noqa: E402
from pickwise.selector.milp import SolverFailed  # noqa: E402
from pickwise.selector.request import select_models  # noqa: E402
from pickwise.selector.types import Candidate, SelectionConstraints  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make_instance(n: int, m: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    price_in = np.exp(np.linspace(np.log(0.1), np.log(10.0), m)) * np.exp(rng.normal(0, 0.2, m))  # USD / M tokens
    price_out = price_in * rng.uniform(1.0, 4.0, m)
    skill = 0.8 * np.log(price_in) + rng.normal(0, 0.5, m)
    domains = 8
    affinity = rng.normal(0, 0.6, (domains, m))
    difficulty = rng.normal(0, 1.3, n)
    domain = rng.integers(0, domains, n)
    logit = skill[None, :] - difficulty[:, None] + affinity[domain] + rng.normal(0, 0.5, (n, m))
    quality = 1.0 / (1.0 + np.exp(-logit))
    prompt_tokens = np.maximum(rng.lognormal(5.5, 1.0, n), 5)
    out_tokens = rng.lognormal(5.5, 0.4, m)
    cost = (prompt_tokens[:, None] * price_in[None, :] + (out_tokens * price_out)[None, :]) / 1e6
    cheapest = cost.min(axis=1).sum()
    best = cost[np.arange(n), quality.argmax(axis=1)].sum()
    return quality, cost, 0.5 * (cheapest + best)


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def batch_row(n: int, solver: str, repeats: int, **kw) -> dict:
    q, c, budget = make_instance(n)
    t0 = time.perf_counter()
    try:
        med, times, plan = timed(lambda: plan_batch(q, c, budget=budget, solver=solver, **kw), repeats)
    except SolverFailed as exc:  # e.g. CBC without any plan when its time cap hits
        wall = time.perf_counter() - t0
        print(f"  N={n:>8} {solver:<11} {kw or ''} FAILED after {wall:.1f} s: {exc}", flush=True)
        return {"n": n, "m": q.shape[1], "solver": solver, "solver_used": solver, "status": f"failed: {exc}",
                "median_s": wall, "times_s": [wall], "gap": math.inf, "quality_sum": math.nan, "total_cost": math.nan,
                "budget": budget, "within_budget": False, "options": kw, "notes": []}
    row = {
        "n": n, "m": q.shape[1], "solver": solver, "solver_used": plan.solver, "status": plan.status,
        "median_s": med, "times_s": times, "gap": plan.gap, "quality_sum": plan.quality_sum,
        "total_cost": plan.total_cost, "budget": budget, "within_budget": plan.total_cost <= budget,
        "options": kw, "notes": plan.notes,
    }
    print(f"  N={n:>8} {solver:<11} {kw or ''} median {med:8.3f} s  gap {plan.gap:.2e}  status {plan.status}"
          f"  quality {plan.quality_sum:.3f}", flush=True)
    return row


def request_rows(repeats: int = 500) -> list[dict]:
    rng = np.random.default_rng(1)
    pool = [Candidate(name=f"m{i}", quality=float(rng.uniform(0.3, 0.95)), cost_usd=float(rng.uniform(1e-5, 1e-2)),
                      latency_ms=float(rng.uniform(100, 5000))) for i in range(60)]
    rows = []
    for k in (1, 2, 3):
        cons = SelectionConstraints(min_quality=0.9, max_models=k, max_latency_ms=4000)
        for method in ("auto", "ilp"):
            reps = repeats if method == "auto" else 5
            select_models(pool, cons, method=method)
            per = []
            for _ in range(max(3, reps // 100)):
                t0 = time.perf_counter()
                for _ in range(100 if method == "auto" else 1):
                    d = select_models(pool, cons, method=method)
                per.append((time.perf_counter() - t0) / (100 if method == "auto" else 1))
            rows.append({"models": 60, "max_models": k, "method": d.method, "median_ms": statistics.median(per) * 1e3,
                         "chosen": d.chosen, "cost_usd": d.cost_usd})
            print(f"  request 60 models k={k} {d.method:<11} median {statistics.median(per) * 1e3:8.3f} ms", flush=True)
    return rows


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import highspy  # noqa: F401
    import pulp
    import scipy

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "pulp": pulp.__version__, "shared": "2 cores shared with other jobs"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cbc-cap", type=float, default=120.0)
    ap.add_argument("--markdown-only", action="store_true", help="rewrite selector.md from selector.json")
    args = ap.parse_args()
    if args.markdown_only:
        report = json.loads((RESULTS / "selector.json").read_text())
        (RESULTS / "selector.md").write_text(markdown(report, args.cbc_cap))
        return 0
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    reps = 3
    rows = []
    print("batch planning, 25 models, one binding budget", flush=True)
    for n in sizes:
        rows.append(batch_row(n, "lagrangian", reps))
        rows.append(batch_row(n, "exact", reps))
        if n == 100_000 or (args.quick and n == 10_000):
            rows.append(batch_row(n, "exact", reps, gap_tolerance=0.0))
            rows.append(batch_row(n, "auto", reps))
    cbc_sizes = [1_000] if args.quick else [1_000, 10_000, 100_000]
    for n in cbc_sizes:
        rows.append(batch_row(n, "pulp-cbc", 1, time_limit=args.cbc_cap, gap_tolerance=1e-4))
    print("per-request selection", flush=True)
    requests = request_rows()
    report = {"machine": machine(), "batch": rows, "requests": requests}
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"selector{suffix}.json").write_text(json.dumps(report, indent=2, default=float))
    (RESULTS / f"selector{suffix}.md").write_text(markdown(report, args.cbc_cap))
    print(markdown(report, args.cbc_cap))
    return 0


def markdown(report: dict, cap: float) -> str:
    rows = report["batch"]
    lines = [
        "# Selector benchmark", "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores ({report['machine']['shared']}); "
        f"numpy {report['machine']['numpy']}, scipy {report['machine']['scipy']} (HiGHS), pulp {report['machine']['pulp']}.",
        "Instance: N prompts x 25 models, correlated qualities, prices spanning 100x, budget halfway between the "
        "cheapest plan and the best-model plan. Times are medians of 3 runs (pulp+CBC: 1 run, wall time), "
        "including input validation and the certificate.", "",
        "| N | solver | used | median s | certified gap | status | quality sum | within budget |",
        "|---:|---|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        name = r["solver"] + (f" (gap tol {r['options']['gap_tolerance']:g})" if "gap_tolerance" in r["options"] else "")
        lines.append(f"| {r['n']:,} | {name} | {r['solver_used']} | {r['median_s']:.3f} | {r['gap']:.1e} | "
                     f"{r['status']} | {r['quality_sum']:.2f} | {'yes' if r['within_budget'] else 'NO'} |")
    lines += ["", "Ratios against plain pulp + CBC (same instance; CBC time includes building the pulp model):", ""]
    for r in rows:
        if r["solver"] != "pulp-cbc":
            continue
        for other in ("lagrangian", "exact"):
            match = [x for x in rows if x["n"] == r["n"] and x["solver"] == other and "gap_tolerance" not in x["options"]]
            if not match:
                continue
            ratio = r["median_s"] / match[0]["median_s"]
            if r["status"].startswith("failed"):
                lines.append(f"- N={r['n']:,}: CBC found no plan in {r['median_s']:.0f} s wall (solver time cap "
                             f"{cap:g} s, plus model build and CBC overrun) vs {other} {match[0]['median_s']:.3f} s: "
                             f"more than {ratio:.0f}x")
            else:
                lines.append(f"- N={r['n']:,}: CBC {r['median_s']:.1f} s ({r['status']}) vs {other} "
                             f"{match[0]['median_s']:.3f} s: {ratio:.0f}x")
    lines += ["", "| per request (60 models) | max_models | method | median ms |", "|---|---:|---|---:|"]
    for r in report["requests"]:
        lines.append(f"| select_models | {r['max_models']} | {r['method']} | {r['median_ms']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
