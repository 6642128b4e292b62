"""Exact and LP-based solvers for the batch MCKP through HiGHS (scipy.optimize.milp / linprog).

The exact path first shrinks the model with reduced-cost fixing: given any Lagrangian bound L
(from the LP relaxation's multipliers) and a feasible incumbent of value z, an option whose
forced use caps the objective below z, i.e. L - reduced_cost[i, m] < z, cannot appear in any
better plan, so it is dropped. Rows left with one option are fixed. On realistic instances
this removes most of the variables while keeping the optimum (the incumbent itself survives).
"""
from __future__ import annotations

import math
import time

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from pickwise.selector.mckp import MCKP, MCKPSolution, _repair_overflow, lagrangian_bound
from pickwise.selector.solver_output import solver_stdout_to_stderr


class SolverFailed(RuntimeError):
    """HiGHS returned no usable plan (infeasible model or time limit without an incumbent)."""

    def __init__(self, message: str, infeasible: bool = False):
        super().__init__(message)
        self.infeasible = infeasible


def _build(problem: MCKP, kept: np.ndarray, extra_limit: float | None = None):
    """Sparse HiGHS model over the kept options; rows with a single kept option are fixed.

    Returns (c, constraints, rows, cols, fixed_choice, fixed_profit, scale) where variable j is
    option cols[j] of row rows[j].
    """
    n, m = problem.shape
    per_row = kept.sum(axis=1)
    fixed = per_row == 1
    fixed_choice = np.where(fixed, kept.argmax(axis=1), -1)
    free = np.flatnonzero(~fixed)
    sub_rows, cols = np.nonzero(kept[free])
    rows = free[sub_rows]
    nv = rows.size
    p = problem.profit[rows, cols]
    w = problem.weight[rows, cols]
    fixed_rows = np.flatnonzero(fixed)
    fixed_profit = math.fsum(problem.profit[fixed_rows, fixed_choice[fixed_rows]])
    pscale = float(np.abs(p).max()) if nv and np.abs(p).max() > 0 else 1.0
    constraints = []
    if nv:
        gub = sparse.csr_matrix((np.ones(nv), (sub_rows, np.arange(nv))), shape=(free.size, nv))
        constraints.append(LinearConstraint(gub, 1.0, 1.0))
    if math.isfinite(problem.limit) and nv:
        room = problem.limit - math.fsum(problem.weight[fixed_rows, fixed_choice[fixed_rows]])
        wscale = float(np.abs(w).max()) or 1.0
        constraints.append(LinearConstraint(sparse.csr_matrix(w[None, :] / wscale), -np.inf, room / wscale))
    if problem.capacity is not None and nv:
        used = np.bincount(fixed_choice[fixed_rows], minlength=m)
        cap = sparse.csr_matrix((np.ones(nv), (cols, np.arange(nv))), shape=(m, nv))
        constraints.append(LinearConstraint(cap, -np.inf, problem.capacity - used))
    return -p / pscale, constraints, rows, cols, fixed_choice, fixed_profit, pscale


def _choice_from(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, fixed_choice: np.ndarray) -> np.ndarray:
    choice = fixed_choice.copy()
    on = x > 0.5
    choice[rows[on]] = cols[on]
    if (choice < 0).any():
        raise SolverFailed("HiGHS returned a plan that leaves a prompt unassigned")
    return choice


def solve_exact(
    problem: MCKP,
    *,
    incumbent: MCKPSolution | None = None,
    gap_tolerance: float = 1e-4,
    time_limit: float | None = None,
) -> MCKPSolution:
    """Solve the MCKP as a MILP with HiGHS to the relative gap `gap_tolerance` (0 = proven optimal).

    `incumbent` (a feasible plan with its multiplier) enables reduced-cost fixing; without one
    (e.g. capacities with no repaired plan) every allowed option stays in the model.
    """
    t0 = time.perf_counter()
    kept = problem.allowed.copy()
    bound = math.inf
    notes: list[str] = []
    if incumbent is not None:
        dual, reduced = lagrangian_bound(problem, incumbent.multiplier, with_reduced=True)
        # Fixing must use the bound that goes with these reduced costs (L at this multiplier), even
        # when the incumbent carries a tighter one (e.g. the capacitated LP value).
        slack = dual - incumbent.value
        bound = min(dual, incumbent.bound)
        kept &= reduced <= slack + 1e-12 * max(1.0, abs(bound))  # float slack only
        kept[np.arange(problem.shape[0]), incumbent.choice] = True
        notes.append(f"reduced-cost fixing kept {int(kept.sum())} of {int(problem.allowed.sum())} options")
    c, constraints, rows, cols, fixed_choice, fixed_profit, pscale = _build(problem, kept)
    if rows.size == 0:
        choice = fixed_choice
        if math.isfinite(problem.limit) and problem.weight_of(choice) > problem.limit:
            raise SolverFailed("the fixed plan exceeds the limit", infeasible=True)
        if problem.capacity is not None and (np.bincount(choice, minlength=problem.shape[1]) > problem.capacity).any():
            raise SolverFailed("the fixed plan exceeds a capacity", infeasible=True)
        value = problem.value_of(choice)
        return MCKPSolution(choice, value, value, "exact-highs", "optimal", notes=tuple(notes))
    # HiGHS measures its gap on the reduced objective; translate the requested gap on the full one.
    target_abs = gap_tolerance * max(abs(bound if math.isfinite(bound) else 0.0), abs(incumbent.value) if incumbent else 0.0)
    reduced_scale = max(abs(bound - fixed_profit) if math.isfinite(bound) else 0.0, 1e-12)
    rel = min(1.0, target_abs / reduced_scale) if gap_tolerance > 0 else 0.0
    options = {"mip_rel_gap": rel, "presolve": True}
    if time_limit is not None:
        options["time_limit"] = max(float(time_limit) - (time.perf_counter() - t0), 0.1)
    with solver_stdout_to_stderr():
        res = milp(c, constraints=constraints, integrality=np.ones(c.size), bounds=Bounds(0, 1), options=options)
    if res.x is None:
        infeasible = res.status == 2
        if incumbent is not None and not infeasible:
            notes.append(f"HiGHS stopped without a plan ({res.message}); returning the incumbent")
            return MCKPSolution(incumbent.choice, incumbent.value, bound, "exact-highs", "time_limit",
                                incumbent.multiplier, tuple(notes))
        raise SolverFailed(f"HiGHS: {res.message}", infeasible=infeasible)
    choice = _repair_overflow(problem, _choice_from(res.x, rows, cols, fixed_choice))
    value = problem.value_of(choice)
    dual = getattr(res, "mip_dual_bound", None)
    if dual is not None and np.isfinite(dual):
        bound = min(bound, fixed_profit - dual * pscale)
    bound = max(bound, value)
    if incumbent is not None and incumbent.value > value:  # never return worse than what we had
        choice, value = incumbent.choice, incumbent.value
    status = "optimal" if res.status == 0 else "time_limit"
    if status == "optimal" and bound - value > 1e-9 * max(1.0, abs(bound)):
        status = "within_gap"
    return MCKPSolution(choice, value, bound, "exact-highs", status, notes=tuple(notes))


def solve_lp_rounded(problem: MCKP) -> MCKPSolution:
    """LP relaxation (HiGHS) plus an exact repair of its fractional rows; used when capacities apply.

    A basic LP optimum has at most (#coupling rows) = 1 + #models fractional prompts, so the
    integral rows are kept and the few fractional ones are re-solved as a tiny MILP against the
    remaining budget and capacities. The LP value certifies the gap. Raises SolverFailed when the
    repair is infeasible (the caller then runs the exact MILP).
    """
    n, m = problem.shape
    c, constraints, rows, cols, fixed_choice, fixed_profit, pscale = _build(problem, problem.allowed)
    if rows.size == 0:
        return solve_exact(problem)
    a_ub, b_ub, a_eq, b_eq = [], [], None, None
    for con in constraints:
        if np.all(con.lb == con.ub):
            a_eq, b_eq = con.A, con.ub
        else:
            a_ub.append(con.A)
            b_ub.append(np.asarray(con.ub, dtype=float).ravel())
    with solver_stdout_to_stderr():
        res = linprog(
            c, A_ub=sparse.vstack(a_ub) if a_ub else None, b_ub=np.concatenate(b_ub) if b_ub else None,
            A_eq=a_eq, b_eq=b_eq, bounds=(0, 1), method="highs",
        )
    if res.status != 0:
        raise SolverFailed(f"LP relaxation: {res.message}", infeasible=res.status == 2)
    lp_bound = fixed_profit - res.fun * pscale
    frac_vars = (res.x > 1e-9) & (res.x < 1 - 1e-9)
    frac_rows = np.unique(rows[frac_vars])
    choice = fixed_choice.copy()
    whole = (res.x >= 1 - 1e-9) & ~np.isin(rows, frac_rows)
    choice[rows[whole]] = cols[whole]
    if frac_rows.size:
        settled = np.flatnonzero(choice >= 0)
        sub_allowed = problem.allowed[frac_rows]
        used = np.bincount(choice[settled], minlength=m)
        sub = MCKP(
            profit=problem.profit[frac_rows], weight=problem.weight[frac_rows], allowed=sub_allowed,
            limit=problem.limit - math.fsum(problem.weight[settled, choice[settled]]),
            capacity=None if problem.capacity is None else problem.capacity - used,
        )
        if sub.capacity is not None and (sub.capacity < 0).any():
            raise SolverFailed("LP rounding over-used a capacity")
        try:
            sub_solution = solve_exact(sub, gap_tolerance=0.0)
        except SolverFailed as exc:
            raise SolverFailed(f"repairing {frac_rows.size} fractional prompts failed: {exc}") from exc
        choice[frac_rows] = sub_solution.choice
    choice = _repair_overflow(problem, choice)
    value = problem.value_of(choice)
    bound = max(lp_bound, value)
    status = "optimal" if bound - value <= 1e-9 * max(1.0, abs(bound)) else "within_gap"
    return MCKPSolution(choice, value, bound, "lp-rounding", status,
                        notes=(f"{frac_rows.size} fractional prompts repaired",))
