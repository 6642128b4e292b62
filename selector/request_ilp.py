"""The per-request set selection as an integer program (pulp, solved by HiGHS).

x_m = 1 if model m is called. Constraints: 1 <= sum x <= k; the quality floor as the linear row
sum x_m log(1 - q_m) <= log(1 - floor) (see selector.sets); the cost cap sum x_m c_m <= cap.
Objectives: min_cost minimises sum c x; max_quality minimises sum x log(1 - q) (same optimum,
since set quality is monotone in it); balanced maximises 1 - exp(s) - lambda * sum c x with
w the willingness to pay and s = sum x log(1 - q); 1 - exp(s) is concave in s, so the problem: it is solved exactly by outer approximation
(tangent cuts of 1 - exp(s) added at each incumbent's s until the model's estimate is tight).
Every solution is re-checked with the same arithmetic as the enumeration; a set that only
passes within solver tolerance is cut off with a no-good constraint and the model re-solved.
"""
from __future__ import annotations

import math

import numpy as np
import pulp

from pickwise.selector.pulp_models import new_variable
from pickwise.selector.sets import LOG_FLOOR, cost_limit, floor_limit, log_miss, set_quality
from pickwise.selector.solver_output import solver_stdout_to_stderr

_MAX_ROUNDS = 60


def _highs() -> pulp.HiGHS:
    return pulp.HiGHS(msg=False, gapRel=0.0, gapAbs=0.0, primal_feasibility_tolerance=1e-10,
                      mip_feasibility_tolerance=1e-10)


def solve_set_ilp(
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    k: int,
    min_quality: float | None,
    max_cost: float | None,
    objective: str,
    willingness_to_pay: float | None = None,
) -> list[int] | None:
    """Indices of the optimal set of 1..k models, or None when no set meets floor and cap."""
    n = quality.size
    lm = log_miss(quality)
    q_lim, c_lim = floor_limit(min_quality), cost_limit(max_cost)
    cscale = float(cost.max()) if n and cost.max() > 0 else 1.0
    prob = pulp.LpProblem("request", pulp.LpMinimize)
    x = [new_variable(prob, f"x_{m}") for m in range(n)]
    s_expr = pulp.lpSum(float(lm[m]) * x[m] for m in range(n))
    c_expr = pulp.lpSum(float(cost[m] / cscale) * x[m] for m in range(n))
    prob += pulp.lpSum(x) >= 1
    prob += pulp.lpSum(x) <= k
    if math.isfinite(q_lim):
        prob += s_expr <= q_lim
    if math.isfinite(c_lim):
        prob += c_expr <= c_lim / cscale
    z = None
    if objective == "min_cost":
        prob += c_expr
    elif objective == "max_quality":
        prob += s_expr
    else:
        pay = float(willingness_to_pay) / cscale  # objective in units of cscale USD
        if k == 1:  # linear in x
            prob += -pay * pulp.lpSum(float(quality[m]) * x[m] for m in range(n)) + c_expr
        else:
            z = new_variable(prob, "set_quality", binary=False, up=1.0)
            prob += -pay * z + c_expr
            _tangent(prob, z, s_expr, 0.0)
            _tangent(prob, z, s_expr, max(float(np.sort(lm)[:k].sum()), LOG_FLOOR))
    for _ in range(_MAX_ROUNDS):
        with solver_stdout_to_stderr():
            prob.solve(_highs())
        if prob.status != pulp.LpStatusOptimal:
            return None
        chosen = [m for m in range(n) if (x[m].varValue or 0.0) > 0.5]
        s_val = float(lm[chosen].sum())
        if s_val > q_lim or float(cost[chosen].sum()) > c_lim or not 1 <= len(chosen) <= k:
            prob += pulp.lpSum(x[m] for m in chosen) <= len(chosen) - 1  # passes only within tolerance
            continue
        if z is not None and (z.varValue or 0.0) - float(set_quality(s_val)) > 1e-10:
            _tangent(prob, z, s_expr, s_val)  # the estimate was optimistic at this s: tighten there
            continue
        return chosen
    raise RuntimeError(f"set ILP did not converge in {_MAX_ROUNDS} rounds")


def _tangent(prob: pulp.LpProblem, z: pulp.LpVariable, s_expr, s0: float) -> None:
    """z <= f(s0) + f'(s0)(s - s0) for f(s) = 1 - exp(s): an over-estimate, exact at s0."""
    e = math.exp(s0)
    prob += z <= (1 - e) - e * (s_expr - s0)
