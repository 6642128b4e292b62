"""The plain batch ILP written with pulp, solved by CBC or HiGHS: the reference formulation.

No pruning or fixing: one binary per allowed (prompt, model), one "exactly one model" row per
prompt, the budget row and capacity rows. It exists to cross-check the fast solvers and to
measure what the structure-aware paths buy (see bench/bench_selector.py).
"""
from __future__ import annotations

import math
import time

import numpy as np
import pulp

from pickwise.selector.mckp import MCKP, MCKPSolution, _repair_overflow
from pickwise.selector.milp import SolverFailed
from pickwise.selector.solver_output import solver_stdout_discarded, solver_stdout_to_stderr

PULP_SOLVERS = ("pulp-cbc", "pulp-highs")


def new_variable(prob: pulp.LpProblem, name: str, *, binary: bool = True, up: float | None = None) -> pulp.LpVariable:
    """A variable attached to `prob` (pulp >= 3.3 API; direct LpVariable() on older pulp)."""
    cat = pulp.LpBinary if binary else pulp.LpContinuous
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, lowBound=0 if binary else None, upBound=1 if binary else up, cat=cat)
    return pulp.LpVariable(name, upBound=up, cat=cat)


class _QuietHiGHS(pulp.HiGHS):
    """pulp's HiGHS with msg=False still printed HiGHS's banner: the instance prints it when made."""

    def createAndConfigureSolver(self, lp):
        with solver_stdout_discarded():
            super().createAndConfigureSolver(lp)


def _solver(name: str, gap_tolerance: float, time_limit: float | None):
    kwargs = {"msg": False, "gapRel": gap_tolerance}
    if time_limit is not None:
        kwargs["timeLimit"] = time_limit
    if name == "pulp-cbc":
        return pulp.PULP_CBC_CMD(**kwargs)
    if name == "pulp-highs":
        return _QuietHiGHS(**kwargs)
    raise ValueError(f"unknown pulp solver {name!r}; expected one of {PULP_SOLVERS}")


def solve_pulp(
    problem: MCKP,
    solver: str,
    *,
    bound: float = math.inf,
    gap_tolerance: float = 1e-4,
    time_limit: float | None = None,
) -> MCKPSolution:
    """Build and solve the full ILP with pulp; `bound` (e.g. the LP bound) certifies the gap.

    pulp does not expose the solvers' dual bounds uniformly, so the gap reported is against the
    bound passed in.
    """
    n, m = problem.shape
    t0 = time.perf_counter()
    prob = pulp.LpProblem("batch_plan", pulp.LpMaximize)
    rows, cols = np.nonzero(problem.allowed)
    xs = [new_variable(prob, f"x_{i}_{j}") for i, j in zip(rows.tolist(), cols.tolist())]
    p = problem.profit[rows, cols].tolist()
    prob += pulp.LpAffineExpression(list(zip(xs, p)))
    starts = np.searchsorted(rows, np.arange(n + 1))
    for i in range(n):
        prob += pulp.LpAffineExpression([(x, 1.0) for x in xs[starts[i] : starts[i + 1]]]) == 1, f"one_{i}"
    if math.isfinite(problem.limit):
        w = problem.weight[rows, cols].tolist()
        prob += pulp.LpAffineExpression(list(zip(xs, w))) <= problem.limit, "limit"
    if problem.capacity is not None:
        for j in range(m):
            members = np.flatnonzero(cols == j).tolist()
            prob += pulp.LpAffineExpression([(xs[k], 1.0) for k in members]) <= int(problem.capacity[j]), f"cap_{j}"
    build_s = time.perf_counter() - t0
    remaining = None if time_limit is None else max(time_limit - build_s, 1.0)
    with solver_stdout_to_stderr():
        prob.solve(_solver(solver, gap_tolerance, remaining))
    if prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        raise SolverFailed(
            f"{solver}: {pulp.LpStatus[prob.status]}", infeasible=prob.status == pulp.LpStatusInfeasible
        )
    values = np.array([x.varValue or 0.0 for x in xs])
    choice = np.full(n, -1, dtype=np.int64)
    on = values > 0.5
    choice[rows[on]] = cols[on]
    if (choice < 0).any():
        raise SolverFailed(f"{solver} returned a plan that leaves a prompt unassigned")
    choice = _repair_overflow(problem, choice)
    value = problem.value_of(choice)
    hit_limit = prob.sol_status == pulp.LpSolutionIntegerFeasible
    bound = max(bound, value)
    status = "time_limit" if hit_limit else ("optimal" if bound - value <= 1e-9 * max(1.0, abs(bound)) else "within_gap")
    return MCKPSolution(choice, value, bound, solver, status, notes=(f"model build {build_s:.2f}s",))
