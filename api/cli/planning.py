"""`pickwise plan` and `pickwise universe`: batch budget planning and pool construction from a JSONL workload.

Both read lines {"id", "prompt"} (optionally with "quality": {model: p}, which skips the
predictor for that line), price them with the registry, and hand the matrices to
selector.plan_batch / selector.build_universe. Results go to stdout (or --output), the
progress bar and a human summary to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys

from pickwise.api.cli.options import CliError, add_artifact_option, add_registry_option, load_registry_option, number
from pickwise.api.cli.output import check_output_path, open_output
from pickwise.selector.batch import SOLVERS, plan_batch
from pickwise.selector.errors import BudgetInfeasible, PlanInfeasible, SelectorInputError
from pickwise.selector.types import BatchPlan, UniversePlan
from pickwise.selector.universe import build_universe
from pickwise.selector.workload import Workload, WorkloadError, candidate_models, load_workload


def register(subparsers) -> None:
    plan = subparsers.add_parser(
        "plan", help="assign a model to every prompt of a batch under a budget",
        description="Maximise total predicted quality within --budget, or minimise cost with mean quality "
                    ">= --min-avg-quality (and within --budget if both are given).",
    )
    _workload_options(plan)
    plan.add_argument("--budget", type=number(low=0), help="total USD for the batch")
    plan.add_argument("--min-avg-quality", type=number(low=0, high=1), metavar="Q", help="minimise cost subject to mean quality >= Q")
    plan.add_argument("--min-quality", type=number(low=0, high=1), metavar="P", help="per-prompt quality floor")
    plan.add_argument("--max-latency-ms", type=number(above=0), help="per-prompt latency cap")
    plan.add_argument("--capacity", metavar="MODEL=N,...", help="at most N prompts per model")
    plan.add_argument("--solver", choices=SOLVERS, default="auto")
    plan.add_argument("--gap-tolerance", type=number(low=0), default=1e-4, help="accepted certified relative gap (default 1e-4)")
    plan.add_argument("--time-limit", type=number(above=0), help="seconds for the MILP")
    plan.add_argument("--output", metavar="FILE", help="write plan lines here (default: stdout)")
    plan.set_defaults(func=cmd_plan)

    universe = subparsers.add_parser(
        "universe", help="choose the pool of models that serves a workload best",
        description="Choose at most --max-models models (and/or within --max-mean-cost USD per prompt) that "
                    "maximise the mean over prompts of the best pool model's predicted quality.",
    )
    _workload_options(universe)
    universe.add_argument("--max-models", type=number(int, low=1), metavar="K", help="pool size limit")
    universe.add_argument("--max-mean-cost", type=number(low=0), metavar="USD", help="mean cost per prompt when each goes to its pool model")
    universe.add_argument("--solver", choices=("auto", "ilp", "greedy"), default="auto")
    universe.add_argument("--time-limit", type=number(above=0), default=60.0, help="seconds for the MILP (default 60)")
    universe.set_defaults(func=cmd_universe)


def _workload_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="FILE", help='JSONL: {"id", "prompt"} or with "quality": {model: p}')
    parser.add_argument("--models", metavar="A,B", help="candidate models (default: every enabled model)")
    parser.add_argument("--expected-output-tokens", type=number(int, low=0), help="override each model's expected answer length")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_registry_option(parser)
    add_artifact_option(parser)


def _load(args: argparse.Namespace) -> Workload:
    snapshot = load_registry_option(args.registry)
    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else None

    def predictor():
        from pickwise.predictor import load_predictor

        return load_predictor(args.artifact)

    try:
        specs = candidate_models(snapshot, names)
        workload = load_workload(args.input, snapshot, specs, predictor, output_tokens=args.expected_output_tokens,
                                 progress=not args.quiet)
    except WorkloadError as exc:
        raise CliError(str(exc)) from None
    if workload.low_confidence and not args.quiet:
        for name, why in workload.low_confidence.items():
            print(f"warning: {name}: low-confidence quality ({why})", file=sys.stderr)
    return workload


def _capacity(text: str | None, workload: Workload) -> list[int] | None:
    if not text:
        return None
    caps = {name: len(workload.ids) for name in workload.names}
    for item in text.split(","):
        name, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit():
            raise CliError(f"--capacity: expected MODEL=N, got {item!r}")
        if name.strip() not in caps:
            raise CliError(f"--capacity: '{name.strip()}' is not a candidate model ({', '.join(workload.names[:6])} ...)")
        caps[name.strip()] = int(count)
    return [caps[n] for n in workload.names]


def cmd_plan(args: argparse.Namespace) -> int:
    check_output_path("--output", args.output)
    workload = _load(args)
    try:
        plan = plan_batch(
            workload.quality, workload.cost_usd, budget=args.budget, min_avg_quality=args.min_avg_quality,
            min_quality=args.min_quality, latency=workload.latency_ms, max_latency_ms=args.max_latency_ms,
            capacity=_capacity(args.capacity, workload), allowed=workload.allowed, solver=args.solver,
            time_limit=args.time_limit, gap_tolerance=args.gap_tolerance, model_names=workload.names,
            prompt_ids=workload.ids,
        )
    except BudgetInfeasible as exc:
        raise CliError(f"{exc}\nminimum feasible budget: {exc.min_budget:.6f} USD") from None
    except (PlanInfeasible, SelectorInputError) as exc:
        raise CliError(str(exc)) from None
    lines = (
        json.dumps({"id": pid, "model": workload.names[j], "quality": round(float(workload.quality[i, j]), 6),
                    "cost_usd": float(workload.cost_usd[i, j])})
        for i, (pid, j) in enumerate(zip(workload.ids, plan.assignment))
    )
    with open_output(args.output or "-") as out:
        for line in lines:
            out.write(line + "\n")
    if not args.quiet:
        print(plan_summary(plan, workload), file=sys.stderr)
    return 0


def plan_summary(plan: BatchPlan, workload: Workload) -> str:
    n = len(plan.assignment)
    rows = [
        f"prompts: {n} ({workload.predicted_lines} scored by the predictor), candidate models: {len(plan.model_names)}",
        f"objective: {plan.objective}; solver: {plan.solver} ({plan.status}), certified gap {plan.gap:.2e}, {plan.seconds:.3f} s",
        f"total cost: {plan.total_cost:.6f} USD" + (f" of budget {plan.budget:.6f}" if plan.budget is not None else ""),
        f"expected quality: mean {plan.quality_mean:.4f}, sum {plan.quality_sum:.2f}",
        "prompts per model:",
    ]
    used = sorted(((c, name) for name, c in plan.count_per_model.items() if c), reverse=True)
    rows += [f"  {name:<40} {c:>8}  ({c / n:.1%})" for c, name in used]
    return "\n".join(rows)


def cmd_universe(args: argparse.Namespace) -> int:
    if args.max_models is None and args.max_mean_cost is None:
        raise CliError("give --max-models and/or --max-mean-cost")
    workload = _load(args)
    try:
        plan = build_universe(
            workload.quality, max_models=args.max_models, cost=workload.cost_usd,
            max_mean_cost=args.max_mean_cost, model_names=workload.names, allowed=workload.allowed,
            solver=args.solver, time_limit=args.time_limit, prompt_ids=workload.ids,
        )
    except (PlanInfeasible, SelectorInputError) as exc:
        raise CliError(str(exc)) from None
    print(plan.model_dump_json(indent=2))
    if not args.quiet:
        print(universe_summary(plan, len(workload.ids)), file=sys.stderr)
    return 0


def universe_summary(plan: UniversePlan, n: int) -> str:
    rows = [
        f"pool of {len(plan.models)} model(s) over {n} prompts; solver {plan.solver} ({plan.status}), {plan.seconds:.2f} s",
        f"mean best-model quality {plan.mean_best_quality:.4f} (proven bound {plan.bound:.4f}, gap {plan.gap:.2e})",
    ]
    if plan.mean_cost is not None:
        rows.append(f"mean cost per prompt {plan.mean_cost:.6f} USD")
    rows += [f"  {name:<40} serves {share:.1%}" for name, share in sorted(plan.share.items(), key=lambda kv: -kv[1])]
    return "\n".join(rows)
