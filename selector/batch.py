"""Batch budget planning: give each of N prompts one model, under a total budget or a quality target.

Both objectives become the same multiple-choice knapsack (see selector.mckp):

* budget:            max sum q   s.t. sum c <= budget
* min_avg_quality:   min sum c   s.t. mean q >= Q      (profit = -c, weight = -q, limit = -N*Q)

Per-prompt floors, latency caps and allow-lists only shrink each prompt's option set.
Capacities couple the prompts through the models and break the hull structure; then the fast
path is the LP relaxation with an exact repair of its few fractional prompts
(selector.milp.solve_lp_rounded), else the MILP.

Solvers: 'lagrangian' (hull greedy / LP rounding, certified gap), 'exact' (HiGHS MILP with
reduced-cost fixing, solved to `gap_tolerance`), 'pulp-cbc' / 'pulp-highs' (plain pulp model),
and 'auto' = lagrangian when its certified gap is within `gap_tolerance`, else exact.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from pickwise.selector import validation
from pickwise.selector.errors import BudgetInfeasible, PlanInfeasible, SelectorInputError, SolverTimedOut, at_most
from pickwise.selector.mckp import MCKP, MCKPSolution, solve_lp_greedy
from pickwise.selector.milp import SolverFailed, solve_exact, solve_lp_rounded
from pickwise.selector.pulp_models import PULP_SOLVERS, solve_pulp
from pickwise.selector.types import BatchPlan

Solver = Literal["auto", "exact", "lagrangian", "pulp-cbc", "pulp-highs"]
SOLVERS = ("auto", "exact", "lagrangian") + PULP_SOLVERS


def plan_batch(
    quality,
    cost,
    *,
    budget: float | None = None,
    min_avg_quality: float | None = None,
    min_quality=None,
    latency=None,
    max_latency_ms=None,
    capacity=None,
    allowed=None,
    solver: Solver = "auto",
    time_limit: float | None = None,
    gap_tolerance: float = 1e-4,
    model_names: Sequence[str] | None = None,
    prompt_ids: Sequence[str] | None = None,
) -> BatchPlan:
    """Assign one model per prompt (`model_names` and `prompt_ids` only label errors and the plan).

    quality, cost: [N, M]. With `budget` only: maximise total quality within it. With
    `min_avg_quality`: minimise cost subject to mean quality >= it (and, if `budget` is also
    given, fail with BudgetInfeasible when the cheapest such plan costs more). With neither:
    best allowed model per prompt. Raises PlanInfeasible / BudgetInfeasible (with the
    minimum feasible budget) or SelectorInputError for malformed input.
    """
    t0 = time.perf_counter()
    if solver not in SOLVERS:
        raise SelectorInputError(f"unknown solver {solver!r}; expected one of {', '.join(SOLVERS)}")
    q = validation.quality_matrix(quality, labels=model_names, prompt_ids=prompt_ids)
    n, m = q.shape
    names = list(model_names) if model_names is not None else [f"model_{j}" for j in range(m)]
    if len(names) != m:
        raise SelectorInputError(f"{len(names)} model names for {m} quality columns")
    prompts = validation.prompt_labels(prompt_ids, n)
    c = validation.as_matrix(cost, "cost", shape=(n, m), low=0.0, labels=names, prompts=prompts)
    gap_tolerance = validation.scalar(gap_tolerance, "gap_tolerance", low=0.0, high=1.0)
    if budget is not None:
        budget = validation.scalar(budget, "budget", low=0.0)
    if min_avg_quality is not None:
        min_avg_quality = validation.scalar(min_avg_quality, "min_avg_quality", low=0.0, high=1.0)
    ok = _allowed_mask(q, n, m, names, prompts, min_quality, latency, max_latency_ms, allowed)
    cap = None
    if capacity is not None:
        cap = np.asarray(capacity, dtype=np.int64)
        if cap.shape != (m,) or (cap < 0).any():
            raise SelectorInputError(f"capacity must be {m} non-negative integers (one per model)")
    objective = "min_cost" if min_avg_quality is not None else "max_quality"
    if n == 0:
        return BatchPlan(
            objective=objective, assignment=[], model_names=names, total_cost=0.0, quality_sum=0.0,
            quality_mean=0.0, count_per_model={k: 0 for k in names}, budget=budget,
            min_avg_quality=min_avg_quality, solver=solver, bound=0.0, gap=0.0, status="empty",
            seconds=time.perf_counter() - t0,
        )
    empty_rows = np.flatnonzero(~ok.any(axis=1))
    if empty_rows.size:
        shown = ", ".join(prompts[i] for i in empty_rows[:10]) + (" ..." if empty_rows.size > 10 else "")
        raise PlanInfeasible(
            "no allowed model",
            f"{empty_rows.size} prompt(s) have no allowed model after floors, latency caps and allow-lists: {shown}",
            rows=empty_rows.tolist(),
        )

    if cap is not None and (short := _capacity_shortfall(ok, cap, names, prompts)) is not None:
        raise short

    try:
        if objective == "min_cost":
            problem = MCKP(profit=-c, weight=-q, allowed=ok, limit=-n * min_avg_quality, capacity=cap)
            _check_quality_target(problem, min_avg_quality, n, solver, time_limit)
        else:
            problem = MCKP(profit=q, weight=c, allowed=ok, limit=math.inf if budget is None else budget, capacity=cap)
            if budget is not None:
                _check_budget(problem, c, ok, cap, budget, time_limit)
            elif cap is not None:
                _check_capacity(problem, time_limit)

        solution = _solve(problem, solver, gap_tolerance, time_limit)
        notes = list(solution.notes)
        if objective == "min_cost" and budget is not None:
            solution = _respect_budget(problem, solution, budget, time_limit, notes)
    except SolverFailed as exc:
        if exc.infeasible or time_limit is None:
            raise
        raise SolverTimedOut(f"the plan's solver found no plan within its time limit ({time_limit:g} s): give it "
                             "more time (--time-limit, time_limit) or leave the limit out", time_limit) from None

    rows = np.arange(n)
    chosen_q, chosen_c = q[rows, solution.choice], c[rows, solution.choice]
    counts = np.bincount(solution.choice, minlength=m)
    # for min_cost the profits were negated costs: the bound on -cost is a lower bound on cost
    bound = solution.bound if objective == "max_quality" else -solution.bound
    return BatchPlan(
        objective=objective,
        assignment=solution.choice.tolist(),
        model_names=names,
        total_cost=math.fsum(chosen_c),
        quality_sum=math.fsum(chosen_q),
        quality_mean=math.fsum(chosen_q) / n,
        count_per_model={names[j]: int(counts[j]) for j in range(m)},
        budget=budget,
        min_avg_quality=min_avg_quality,
        solver=solution.method,
        bound=bound,
        gap=solution.gap,
        status=solution.status,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def unserved_rows(quality, *, allowed=None, min_quality=None, latency=None, max_latency_ms=None) -> np.ndarray:
    """The prompts (row indices) no model may take after floors, latency caps and `allowed`: those plan_batch
    refuses as 'no allowed model'. A caller asks again with a rule of its own lifted, to say which one held them."""
    q = validation.quality_matrix(quality)
    n, m = q.shape
    ok = _allowed_mask(q, n, m, [f"model_{j}" for j in range(m)], validation.prompt_labels(None, n), min_quality,
                       latency, max_latency_ms, allowed)
    return np.flatnonzero(~ok.any(axis=1))


def _allowed_mask(q, n, m, names, prompts, min_quality, latency, max_latency_ms, allowed) -> np.ndarray:
    ok = np.ones((n, m), dtype=bool)
    if allowed is not None:
        allowed = np.asarray(allowed)
        if allowed.shape != (n, m) or allowed.dtype != bool:
            raise SelectorInputError(f"allowed must be a boolean [{n}, {m}] array, got {allowed.dtype} {allowed.shape}")
        ok &= allowed
    if min_quality is not None:
        floor = validation.per_prompt(min_quality, "min_quality", n, low=0.0, high=1.0, prompts=prompts)
        ok &= q >= floor[:, None]
    if max_latency_ms is not None:
        if latency is None:
            raise SelectorInputError("max_latency_ms needs latency ([models] or [prompts, models] in ms)")
        lat = validation.per_model_or_matrix(latency, "latency", (n, m), labels=names, prompts=prompts)
        ok &= lat <= validation.per_prompt(max_latency_ms, "max_latency_ms", n, low=0.0, prompts=prompts)[:, None]
    return ok


def _solve(problem: MCKP, solver: str, gap_tolerance: float, time_limit: float | None) -> MCKPSolution:
    """Run the requested solver; 'auto' escalates from the certified fast path to the MILP."""
    if solver in PULP_SOLVERS:
        return solve_pulp(problem, solver, bound=_fast(problem).bound, gap_tolerance=gap_tolerance,
                          time_limit=time_limit)
    fast = None
    if solver in ("auto", "lagrangian") or problem.capacity is None:
        try:
            fast = _fast(problem)
        except SolverFailed:
            if solver == "lagrangian":
                raise
    if solver == "lagrangian" or (solver == "auto" and fast is not None and fast.gap <= gap_tolerance):
        return fast
    return solve_exact(problem, incumbent=fast, gap_tolerance=gap_tolerance, time_limit=time_limit)


def _fast(problem: MCKP) -> MCKPSolution:
    return solve_lp_greedy(problem) if problem.capacity is None else solve_lp_rounded(problem)


def _min_cost_plan(problem_cost: MCKP, time_limit: float | None) -> MCKPSolution:
    """Cheapest assignment with capacities (a transportation problem: its LP is integral)."""
    try:
        return solve_exact(problem_cost, gap_tolerance=0.0, time_limit=time_limit)
    except SolverFailed as exc:
        if exc.infeasible:
            raise PlanInfeasible("capacity", "model capacities cannot serve every prompt with an allowed model") from exc
        raise


def _capacity_shortfall(ok: np.ndarray, cap: np.ndarray, names: list[str], prompts: list[str]) -> PlanInfeasible | None:
    """Why capacities cannot take every prompt, in numbers: their total (each model counted up to the
    prompts it may take) against the prompts, or a group of prompts whose allowed models together hold
    too few places (checked for the 64 commonest allowed-model sets). None when neither shows."""
    n = ok.shape[0]
    usable = int(np.minimum(cap, ok.sum(axis=0)).sum())
    if usable < n:
        return PlanInfeasible("capacity", f"model capacities total {usable} for {n} prompts (each model counted up "
                                          "to the prompts it may take)")
    patterns, counts = np.unique(ok, axis=0, return_counts=True)
    for pattern in patterns[np.argsort(-counts)[:64]]:
        inside = np.flatnonzero(~(ok & ~pattern).any(axis=1))  # prompts that may go only to these models
        places = int(cap[pattern].sum())
        if inside.size > places:
            models = ", ".join(f"{names[j]}={cap[j]}" for j in np.flatnonzero(pattern))
            shown = ", ".join(prompts[i] for i in inside[:10]) + (" ..." if inside.size > 10 else "")
            return PlanInfeasible("capacity", f"{inside.size} prompt(s) may go only to {models} ({places} places): "
                                              f"{shown}", rows=inside.tolist())
    return None


def _check_capacity(problem: MCKP, time_limit: float | None) -> None:
    zeros = np.zeros(problem.shape)
    _min_cost_plan(MCKP(profit=zeros, weight=zeros, allowed=problem.allowed, capacity=problem.capacity), time_limit)


def _check_budget(problem: MCKP, c, ok, cap, budget: float, time_limit: float | None) -> None:
    """BudgetInfeasible with the minimum feasible budget when `budget` cannot cover any plan."""
    if cap is None:
        cheapest = np.where(ok, c, np.inf).min(axis=1)
        min_budget = math.fsum(cheapest)
    else:
        min_budget = -_min_cost_plan(MCKP(profit=-c, weight=np.zeros_like(c), allowed=ok, capacity=cap), time_limit).value
    if min_budget > budget:
        raise BudgetInfeasible(budget, min_budget, "the sum of each prompt's cheapest allowed model"
                               + (" within capacities" if cap is not None else ""))


def _check_quality_target(problem: MCKP, target: float, n: int, solver: str, time_limit: float | None) -> None:
    """PlanInfeasible when even the best allowed model per prompt misses the mean-quality target."""
    if problem.capacity is None:
        best = math.fsum(np.where(problem.allowed, -problem.weight, -np.inf).max(axis=1))
    else:
        best = _min_cost_plan(
            MCKP(profit=-problem.weight, weight=np.zeros(problem.shape), allowed=problem.allowed,
                 capacity=problem.capacity), time_limit).value
    if best < n * target:
        raise PlanInfeasible(
            "quality target",
            f"mean quality {target:.6g} is out of reach: the best allowed model per prompt averages {at_most(best / n)}",
        )


def _respect_budget(problem: MCKP, solution: MCKPSolution, budget: float, time_limit, notes: list[str]) -> MCKPSolution:
    """With both a quality target and a budget: the min-cost plan must fit, else report the true minimum."""
    cost, cost_lower = -solution.value, -solution.bound
    if cost <= budget:
        return solution
    if cost_lower <= budget:  # the gap straddles the budget: settle it exactly
        solution = solve_exact(problem, incumbent=solution, gap_tolerance=0.0, time_limit=time_limit)
        notes.append("re-solved exactly to decide whether the budget suffices")
        cost, cost_lower = -solution.value, -solution.bound
        if cost <= budget:
            return solution
    detail = "the cheapest plan meeting the mean-quality target"
    if cost_lower < cost:
        detail += f"; proven lower bound {cost_lower:.6g} USD"
    raise BudgetInfeasible(budget, cost, detail)
