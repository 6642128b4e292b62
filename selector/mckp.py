"""The multiple-choice knapsack (MCKP) behind batch planning, and its exact LP relaxation.

Every batch objective reduces to one form: each prompt i picks exactly one allowed option m,
maximise sum profit[i, m] subject to sum weight[i, m] <= limit (and optional per-model
capacities). "Max quality under a budget" is profit=quality, weight=cost; "min cost with mean
quality >= Q" is profit=-cost, weight=-quality, limit=-N*Q.

Without capacities the LP relaxation has a closed form (Sinha & Zoltners 1979): on each prompt,
only the options on the upper concave hull of (weight, profit) matter; walking the hulls'
increments in order of decreasing efficiency (profit per weight) until the limit is reached
gives the LP optimum, with at most one prompt fractional. Dropping that fractional step gives a
feasible integer plan, so `bound - value` certifies how far from optimal that plan can be.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Rows per block when walking hulls: small blocks keep the [rows, models] temporaries in cache.
_CHUNK = 2048
# After the LP break point, at most this many further increments are tried to use leftover budget.
_FILL_CANDIDATES = 20000


@dataclass(frozen=True)
class MCKP:
    """maximise sum_i profit[i, x_i] s.t. sum_i weight[i, x_i] <= limit, x_i allowed, per-model counts <= capacity."""

    profit: np.ndarray  # [N, M] float
    weight: np.ndarray  # [N, M] float
    allowed: np.ndarray  # [N, M] bool; every row has at least one True
    limit: float = math.inf
    capacity: np.ndarray | None = None  # [M] ints, or None for unlimited

    @property
    def shape(self) -> tuple[int, int]:
        return self.profit.shape

    def min_weight(self) -> np.ndarray:
        """Per-row lightest allowed weight: their sum is the smallest limit any plan can meet (uncapacitated)."""
        return row_max(lambda lo, hi: np.where(self.allowed[lo:hi], -self.weight[lo:hi], -np.inf), self.shape[0]) * -1

    def value_of(self, choice: np.ndarray) -> float:
        return math.fsum(self.profit[np.arange(len(choice)), choice])

    def weight_of(self, choice: np.ndarray) -> float:
        return math.fsum(self.weight[np.arange(len(choice)), choice])


def row_max(block, n: int) -> np.ndarray:
    """Row maxima of a [N, M] matrix produced block by block (`block(lo, hi)` -> rows lo..hi), so the
    temporaries stay cache-sized instead of N x M."""
    out = np.empty(n)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        out[lo:hi] = block(lo, hi).max(axis=1)
    return out


@dataclass
class MCKPSolution:
    """An integer plan with a certified upper bound on the best achievable profit."""

    choice: np.ndarray  # [N] option index per row
    value: float  # total profit of `choice`
    bound: float  # proven upper bound on the optimum (>= value)
    method: str
    status: str = "ok"  # 'optimal' | 'within_gap' | 'time_limit' | 'ok'
    multiplier: float = 0.0  # LP dual of the weight limit (profit per unit weight at the break point)
    notes: tuple[str, ...] = ()

    @property
    def gap(self) -> float:
        """Relative certified gap (bound - value) / |bound|; 0 when both are 0."""
        diff = max(self.bound - self.value, 0.0)
        if diff == 0.0:
            return 0.0
        return diff / max(abs(self.bound), 1e-12)


@dataclass
class Hulls:
    """Per-row upper concave hulls as a flat list of increments, rows' steps in order."""

    start: np.ndarray  # [N] lightest option (most profitable among equally light ones)
    points: np.ndarray  # [N, L] option index of hull point k (k=0 is start); -1 past the end
    row: np.ndarray  # [K] row of increment
    step: np.ndarray  # [K] 1-based hull point the increment leads to
    dw: np.ndarray  # [K] weight added (> 0)
    dp: np.ndarray  # [K] profit added (> 0)
    eff: np.ndarray  # [K] dp / dw, non-increasing along each row


def concave_hulls(problem: MCKP) -> Hulls:
    """Upper concave hull of every row's (weight, profit) options, from its lightest option upward.

    Vectorised gift wrapping: from the current hull point, the next one is the option with the
    steepest profit gain per extra weight. Each pass costs O(active rows x models) and rows leave
    once no heavier option adds profit, so the total is O(N x M x hull length).
    """
    n, m = problem.shape
    starts, point_blocks, inc = [], [], ([], [], [], [], [])
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        ok = problem.allowed[lo:hi]
        w = np.where(ok, problem.weight[lo:hi], np.inf)
        p = np.where(ok, problem.profit[lo:hi], -np.inf)
        w -= w.min(axis=1, keepdims=True)
        start = np.where(w == 0.0, p, -np.inf).argmax(axis=1)
        points = np.full((hi - lo, m + 1), -1, dtype=np.int64)
        points[:, 0] = start
        cur = start.copy()
        last_eff = np.full(hi - lo, np.inf)
        active = np.arange(hi - lo)
        step = 0
        while active.size:
            step += 1
            pick = np.arange(active.size)
            c = cur[active]
            wa, pa = w[active], p[active]
            dw = wa - wa[pick, c][:, None]
            dp = pa - pa[pick, c][:, None]
            valid = (dw > 0) & (dp > 0)  # disallowed options have dp = -inf
            slope = np.full(dw.shape, -np.inf)
            np.divide(dp, dw, out=slope, where=valid)
            nxt = slope.argmax(axis=1)
            has = valid[pick, nxt]
            rows, sel, nxt = active[has], pick[has], nxt[has]
            # Clamp so each row's efficiencies never increase (float noise on collinear points).
            eff = np.minimum(slope[sel, nxt], last_eff[rows])
            last_eff[rows] = eff
            inc[0].append(rows + lo)
            inc[1].append(np.full(rows.size, step, dtype=np.int64))
            inc[2].append(dw[sel, nxt])
            inc[3].append(dp[sel, nxt])
            inc[4].append(eff)
            points[rows, step] = nxt
            cur[rows] = nxt
            active = rows
        starts.append(start)
        point_blocks.append(points)
    empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
    cat = lambda parts, empty: np.concatenate(parts) if parts else empty  # noqa: E731
    return Hulls(
        start=cat(starts, empty_i),
        points=np.concatenate(point_blocks) if point_blocks else np.zeros((0, m + 1), dtype=np.int64),
        row=cat(inc[0], empty_i),
        step=cat(inc[1], empty_i),
        dw=cat(inc[2], empty_f),
        dp=cat(inc[3], empty_f),
        eff=cat(inc[4], empty_f),
    )


def lagrangian_bound(
    problem: MCKP, multiplier: float, mu: np.ndarray | None = None, *, with_reduced: bool = False
) -> tuple[float, np.ndarray | None]:
    """Dual bound L(lambda, mu) >= optimum for any lambda, mu >= 0 (and optionally the reduced costs).

    L = lambda * limit + mu . capacity + sum_i max_m (profit - lambda * weight - mu)[i, m].
    It is the certificate every solver reports: valid whatever produced lambda, so float noise
    in the hull walk can never overstate optimality. reduced[i, m] = rowmax - r[i, m] is how
    much forcing option m on row i lowers the bound (used for reduced-cost fixing).
    """
    mu_vec = np.zeros(problem.shape[1]) if mu is None else mu

    def reduced_profit(lo: int, hi: int) -> np.ndarray:
        r = problem.profit[lo:hi] - multiplier * problem.weight[lo:hi] - mu_vec[None, :]
        return np.where(problem.allowed[lo:hi], r, -np.inf)

    best = row_max(reduced_profit, problem.shape[0])
    bound = math.fsum(best)
    if math.isfinite(problem.limit):
        bound += multiplier * problem.limit
    if problem.capacity is not None:
        bound += float(np.dot(mu_vec, problem.capacity))
    return bound, (best[:, None] - reduced_profit(0, problem.shape[0])) if with_reduced else None


def solve_lp_greedy(problem: MCKP) -> MCKPSolution:
    """Exact LP bound plus a feasible rounded plan for the uncapacitated MCKP.

    Raises ValueError if even the lightest options exceed the limit (caller checks first).
    """
    if problem.capacity is not None:
        raise ValueError("the hull greedy ignores capacities; use the LP/ILP path")
    n, _ = problem.shape
    hulls = concave_hulls(problem)
    base_weight = math.fsum(problem.min_weight()) if n else 0.0
    room = problem.limit - base_weight
    if room < 0:
        raise ValueError(f"limit {problem.limit} is below the lightest plan's weight {base_weight}")
    eff = hulls.eff
    # Stable sort keeps each row's increments in hull order when efficiencies tie.
    order = np.argsort(-eff, kind="stable")
    cum_w = np.cumsum(hulls.dw[order])
    taken = int(np.searchsorted(cum_w, room, side="right"))
    if taken < order.size:
        multiplier = float(eff[order[taken]])  # efficiency of the increment the LP takes fractionally
    else:
        multiplier = 0.0  # the limit does not bind
    # The dual bound at the break multiplier equals the LP value (Sinha & Zoltners) and, being a
    # Lagrangian bound, stays valid whatever rounding the hull walk suffered.
    bound = lagrangian_bound(problem, multiplier)[0] if n else 0.0
    steps = np.bincount(hulls.row[order[:taken]], minlength=n)
    steps = _fill_leftover(hulls, order[taken + 1 :], steps, room - (cum_w[taken - 1] if taken else 0.0))
    choice = hulls.points[np.arange(n), steps]
    choice = _repair_overflow(problem, choice)
    value = problem.value_of(choice)
    return MCKPSolution(
        choice=choice, value=value, bound=max(bound, value), method="lagrangian", multiplier=multiplier,
        status="optimal" if bound - value <= 1e-12 * max(1.0, abs(bound)) else "within_gap",
    )


def _fill_leftover(hulls: Hulls, rest: np.ndarray, steps: np.ndarray, room: float) -> np.ndarray:
    """Greedily take later hull increments that still fit the leftover room (keeps rows' step order)."""
    if rest.size == 0 or room <= 0:
        return steps
    rest = rest[hulls.dw[rest] <= room][:_FILL_CANDIDATES]
    steps = steps.copy()
    for k in rest.tolist():
        r = hulls.row[k]
        if steps[r] + 1 == hulls.step[k] and hulls.dw[k] <= room:
            steps[r] += 1
            room -= hulls.dw[k]
    return steps


def _repair_overflow(problem: MCKP, choice: np.ndarray) -> np.ndarray:
    """Guarantee sum weight <= limit exactly (fsum), undoing float drift from cumulative sums or solvers.

    Prefers the single move (one row onto a lighter option, on a model with spare capacity) that
    removes the whole excess at the least profit loss; only if no single move suffices does it
    move the row with the least loss per unit of weight saved and repeat. Drift is tiny, so in
    practice this touches zero or one row.
    """
    if not math.isfinite(problem.limit):
        return choice
    choice = choice.copy()
    rows = np.arange(choice.size)
    for _ in range(choice.size + 1):
        excess = problem.weight_of(choice) - problem.limit
        if excess <= 0:
            return choice
        saves = problem.weight[rows, choice][:, None] - problem.weight
        lighter = problem.allowed & (saves > 0)
        if problem.capacity is not None:  # only move rows onto models with spare capacity
            spare = np.bincount(choice, minlength=problem.shape[1]) < problem.capacity
            lighter &= spare[None, :]
        if not lighter.any():
            break
        loss = problem.profit[rows, choice][:, None] - problem.profit
        enough = lighter & (saves >= excess * (1 + 1e-9))
        if enough.any():
            score = np.where(enough, loss, np.inf)
        else:
            score = np.where(lighter, loss / np.where(lighter, saves, 1.0), np.inf)
        r, m = np.unravel_index(np.argmin(score), score.shape)
        choice[r] = m
    raise ValueError("no plan fits the limit")
