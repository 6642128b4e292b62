"""Universe constructor: the pool of models that serves a workload best.

Given predicted qualities q[i, m] on a sample of prompts, choose a pool P (at most K models,
and/or within a total price, and/or within a mean cost per prompt) maximising the mean over
prompts of the quality of the pool model serving the prompt. Without a cost budget that is the
expected best-model quality, mean_i max_{m in P} q[i, m]: a max-coverage problem.

ILP (HiGHS): z_m = model m is in the pool, y_im = prompt i is served by m;
    max (1/N) sum q_im y_im   s.t.  sum_m y_im = 1,  y_im <= z_m,  sum z <= K,
    [sum price_m z_m <= P],  [(1/N) sum c_im y_im <= mean cost budget].
With only the cardinality limit the objective is monotone submodular, so greedy reaches at
least (1 - 1/e) of the optimum; it also yields an online bound (Nemhauser & Wolsey:
f(S) + the K largest marginal gains over S bounds OPT), reported as the certificate.

Only z is integral: without a mean-cost budget y is integral once z is. With one, the MILP may
split a prompt between two pool models to spend the budget exactly, so its bound is that of the
split routing and can sit above the best whole-prompt routing of any pool: then the pool is
reported `within_gap` (with that gap), not `optimal`. Integral y would close the gap at a cost
far beyond the time limits used here. The reported pool holds only models that serve at least
one prompt, so it can be smaller than K when more models add nothing.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from pickwise.selector import validation
from pickwise.selector.errors import PlanInfeasible, SelectorInputError, SolverTimedOut, at_least
from pickwise.selector.solver_output import solver_stdout_to_stderr
from pickwise.selector.types import UniversePlan

# Above this many (prompt, model) pairs, 'auto' uses greedy when it is allowed to.
ILP_CELL_LIMIT = 300_000
# A pool is reported `optimal` only when its value is within this relative gap of the proven bound.
OPTIMAL_GAP = 1e-6


def build_universe(
    quality,
    *,
    max_models: int | None = None,
    cost=None,
    max_mean_cost: float | None = None,
    model_price: Sequence[float] | None = None,
    max_total_price: float | None = None,
    model_names: Sequence[str] | None = None,
    allowed=None,
    solver: Literal["auto", "ilp", "greedy"] = "auto",
    time_limit: float | None = 60.0,
    prompt_ids: Sequence[str] | None = None,
) -> UniversePlan:
    """Choose the pool; see the module docstring for the model.

    With only a model-count limit, greedy plus swap search always runs (fast, certified by the
    online bound); the MILP then tries to prove or beat it within `time_limit` seconds.
    """
    t0 = time.perf_counter()
    q = validation.quality_matrix(quality, labels=model_names, prompt_ids=prompt_ids)
    n, m = q.shape
    names = list(model_names) if model_names is not None else [f"model_{j}" for j in range(m)]
    if len(names) != m:
        raise SelectorInputError(f"{len(names)} model names for {m} quality columns")
    if n == 0 or m == 0:
        raise SelectorInputError(f"universe needs at least one prompt and one model (got {n} x {m})")
    ok = np.ones((n, m), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if ok.shape != (n, m):
        raise SelectorInputError(f"allowed has shape {ok.shape}, expected {(n, m)}")
    if not ok.any(axis=1).all():
        empty = np.flatnonzero(~ok.any(axis=1))
        raise PlanInfeasible("no allowed model", f"prompt {validation.prompt_labels(prompt_ids, n)[empty[0]]} "
                             "has no allowed model", rows=empty.tolist())
    q = np.where(ok, q, 0.0)  # a model that may not serve a prompt adds nothing to its coverage
    if max_models is None and max_mean_cost is None and max_total_price is None:
        raise SelectorInputError("give max_models, max_mean_cost or max_total_price (else the pool is every model)")
    if max_models is not None and not 1 <= int(max_models):
        raise SelectorInputError(f"max_models must be >= 1, got {max_models}")
    c = None
    if max_mean_cost is not None:
        if cost is None:
            raise SelectorInputError("max_mean_cost needs the cost matrix")
        c = validation.as_matrix(cost, "cost", shape=(n, m), low=0.0, labels=names)
        max_mean_cost = validation.scalar(max_mean_cost, "max_mean_cost", low=0.0)
        cheapest = float(np.where(ok, c, np.inf).min(axis=1).mean())
        if cheapest > max_mean_cost:
            raise PlanInfeasible("budget", f"max_mean_cost {max_mean_cost:.6g} USD is below the cheapest "
                                 f"possible mean cost per prompt, {at_least(cheapest)} USD")
    price = None
    if max_total_price is not None:
        if model_price is None:
            raise SelectorInputError("max_total_price needs model_price")
        price = validation.as_matrix(model_price, "model_price", shape=(m,), low=0.0, labels=names)
        if price.min() > max_total_price:
            raise PlanInfeasible("budget", f"max_total_price {max_total_price} is below the cheapest model's price")
    only_cardinality = c is None and price is None
    if solver == "greedy" and not only_cardinality:
        raise SelectorInputError("the greedy path handles a model-count limit only; use solver='ilp' for budgets")
    use_greedy = solver == "greedy" or (solver == "auto" and only_cardinality and n * m > ILP_CELL_LIMIT)
    k = min(int(max_models), m) if max_models is not None else m
    if only_cardinality:
        pool, bound = _greedy(q, k)
        pool = _swap_search(q, pool)
        status, how = "within_gap", "greedy+swap"
    if not use_greedy:
        ilp_pool, ilp_bound, status = _ilp(q, ok, k, c, max_mean_cost, price, max_total_price, time_limit)
        how = "ilp-highs"
        if only_cardinality:  # keep the better pool and the tighter of the two certificates
            bound = min(bound, ilp_bound)
            if ilp_pool and q[:, ilp_pool].max(axis=1).sum() >= q[:, pool].max(axis=1).sum():
                pool = ilp_pool
            else:
                how = "greedy+swap (ilp stopped)"
        else:
            pool, bound = ilp_pool, ilp_bound
    return _plan(q, ok, c, names, pool, bound, how, status, time.perf_counter() - t0, max_mean_cost)


def _swap_search(q: np.ndarray, pool: list[int]) -> list[int]:
    """Improve a pool by best single swaps (one member out, one non-member in) until none helps."""
    n, m = q.shape
    pool = list(pool)
    for _ in range(4 * m):
        sub = q[:, pool]
        order = np.argsort(-sub, axis=1)
        first = sub[np.arange(n), order[:, 0]]
        second = sub[np.arange(n), order[:, 1]] if len(pool) > 1 else np.zeros(n)
        current = first.sum()
        best_gain, best_move = 1e-12 * max(1.0, current), None
        for pos in range(len(pool)):
            without = np.where(order[:, 0] == pos, second, first)
            totals = np.maximum(q, without[:, None]).sum(axis=0)
            totals[pool] = -np.inf
            o = int(np.argmax(totals))
            if totals[o] - current > best_gain:
                best_gain, best_move = totals[o] - current, (pos, o)
        if best_move is None:
            break
        pool[best_move[0]] = best_move[1]
    return pool


def _greedy(q: np.ndarray, k: int) -> tuple[list[int], float]:
    """Greedy max-coverage with the Nemhauser-Wolsey online upper bound (as totals / N)."""
    n, m = q.shape
    best = np.zeros(n)
    pool: list[int] = []
    bound = math.inf
    for _ in range(k + 1):
        gains = np.maximum(q - best[:, None], 0.0).sum(axis=0)
        gains[pool] = 0.0
        value = best.sum()
        bound = min(bound, value + np.sort(gains)[::-1][:k].sum())
        if len(pool) == k:
            break
        j = int(np.argmax(gains))
        pool.append(j)
        best = np.maximum(best, q[:, j])
    return pool, bound / n


def _ilp(q, ok, k, c, max_mean_cost, price, max_total_price, time_limit):
    n, m = q.shape
    ny = n * m
    rows = np.repeat(np.arange(n), m)
    cols = np.tile(np.arange(m), n)
    # variables: y (row-major, n*m), then z (m)
    obj = np.concatenate([-q.ravel() / n, np.zeros(m)])
    cons = [
        LinearConstraint(sparse.csr_matrix((np.ones(ny), (rows, np.arange(ny))), shape=(n, ny + m)), 1.0, 1.0),
        LinearConstraint(  # y_im - z_m <= 0
            sparse.hstack([sparse.identity(ny, format="csr"),
                           -sparse.csr_matrix((np.ones(ny), (np.arange(ny), cols)), shape=(ny, m))]).tocsr(),
            -np.inf, 0.0),
        LinearConstraint(sparse.csr_matrix(np.concatenate([np.zeros(ny), np.ones(m)])[None, :]), 1.0, k),
    ]
    if price is not None:
        cons.append(LinearConstraint(sparse.csr_matrix(np.concatenate([np.zeros(ny), price])[None, :]),
                                     -np.inf, max_total_price))
    if c is not None:
        scale = float(c.max()) or 1.0
        # A 1e-6 relative margin keeps HiGHS's feasibility tolerance (1e-7) from admitting a pool
        # whose routing then overshoots the budget when re-solved exactly in _plan.
        cons.append(LinearConstraint(sparse.csr_matrix(np.concatenate([c.ravel() / (n * scale), np.zeros(m)])[None, :]),
                                     -np.inf, max_mean_cost / scale * (1 - 1e-6)))
    integrality = np.concatenate([np.zeros(ny), np.ones(m)])  # y integral once z is, but for the budget: see top
    options = {"mip_rel_gap": 1e-6}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    upper = np.concatenate([ok.ravel().astype(float), np.ones(m)])
    with solver_stdout_to_stderr():
        res = milp(obj, constraints=cons, integrality=integrality, bounds=Bounds(0, upper), options=options)
    if res.x is None:
        if res.status != 2 and c is None and price is None:
            return [], math.inf, "time_limit"  # the caller keeps its greedy pool
        if res.status == 2:
            raise PlanInfeasible("budget", "no pool of models meets the model-count, price and mean-cost limits")
        if res.status == 1:  # the time limit, without an incumbent that meets the mean-cost limit
            raise SolverTimedOut(
                f"the universe ILP found no pool that meets the mean-cost limit within its time limit "
                f"({time_limit:g} s); give it more time (--time-limit) or loosen --max-mean-cost", time_limit)
        raise RuntimeError(f"universe ILP: {res.message}")
    pool = np.flatnonzero(res.x[ny:] > 0.5).tolist()
    dual = getattr(res, "mip_dual_bound", None)
    bound = -dual if dual is not None and np.isfinite(dual) else math.inf
    return pool, bound, "optimal" if res.status == 0 else "time_limit"


def _plan(q, ok, c, names, pool, bound, solver, status, seconds, max_mean_cost) -> UniversePlan:
    """Evaluate a pool: each prompt goes to its best pool model (within the mean-cost budget if any)."""
    n = q.shape[0]
    sub = q[:, pool]
    if c is None:
        serve = sub.argmax(axis=1)
        mean_cost = None
    else:  # the best routing within the pool under the mean-cost budget is itself a batch plan
        from pickwise.selector.batch import plan_batch

        budget = max_mean_cost * n * (1 + 1e-12)  # mean <= B, up to the rounding of B * n
        plan = plan_batch(sub, c[:, pool], budget=budget, allowed=ok[:, pool], solver="exact", gap_tolerance=1e-9)
        serve = np.asarray(plan.assignment)
        mean_cost = plan.total_cost / n
    value = float(sub[np.arange(n), serve].mean())
    bound = max(bound, value)
    share = np.bincount(serve, minlength=len(pool)) / n
    gap = (bound - value) / max(abs(bound), 1e-12)
    if status == "optimal" and gap > OPTIMAL_GAP:  # the solver proved its relaxation, not this pool's routing
        status = "within_gap"
    used = [(j, s) for j, s in zip(pool, share) if s > 0]  # a member that serves no prompt adds nothing
    return UniversePlan(
        models=[names[j] for j, _ in used], mean_best_quality=value, mean_cost=mean_cost,
        share={names[j]: float(s) for j, s in used}, bound=bound, gap=gap, solver=solver, status=status,
        seconds=seconds,
    )
