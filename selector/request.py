"""Per-request model (or model-set) selection: filters, exact fast paths, the ILP, fallbacks.

The default path is exact and fast: with one model it is a vectorised scan, with up to three
parallel models over at most ENUMERATION_LIMIT candidates it enumerates every set of the models
that fewer than k others dominate (at most 34k triples for 60 models, usually a few hundred). Larger pools, or method='ilp', use the
integer program in selector.request_ilp, which the tests check against the enumeration.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from pickwise.predictor.scale import set_quality as correlated_set_quality
from pickwise.registry.schema import CAPABILITIES
from pickwise.selector.errors import InfeasibleSelection, SelectorInputError
from pickwise.selector.request_ilp import solve_set_ilp
from pickwise.selector.sets import (
    REL_TOL,
    cost_limit,
    floor_limit,
    log_miss,
    meets_floor,
    member_sum,
    set_quality,
    subsets,
)
from pickwise.selector.types import Candidate, Decision, SelectionConstraints

ENUMERATION_LIMIT = 60
# Constraints that say "never call this model here" (a fallback must respect them too) ...
BASE_ON_OPEN_ENDED = "base model, open-ended prompt"
LACKS = {c: f"lacks {c}" for c in CAPABILITIES}  # a capability the request needs and the model does not declare
HARD_REASONS = ("disabled", "deny-list", "not in allow-list", "context window", "max output tokens", BASE_ON_OPEN_ENDED,
                *LACKS.values())
# ... and the ones a fallback may break.
SOFT_REASONS = ("latency cap", "cost cap", "quality floor", "low confidence")

Method = Literal["auto", "scan", "enumeration", "ilp"]


class _Pool:
    """The candidates as parallel arrays, for vectorised filtering and scoring.

    `floor_quality` is what counts towards a quality floor: a low-confidence quality counts as 0
    unless the request allows it, so it cannot meet the floor on its own (it may still join a set
    whose other members meet it). `rho` is the set-failure correlation of `set_quality`.
    """

    def __init__(self, candidates: Sequence[Candidate], cons: SelectionConstraints, rho: float = 0.0):
        self.candidates = list(candidates)
        self.rho = float(rho)
        self.names = [c.name for c in candidates]
        self.quality = np.array([c.quality for c in candidates], dtype=np.float64)
        self.cost = np.array([c.cost_usd for c in candidates], dtype=np.float64)
        self.latency = np.array([c.latency_ms for c in candidates], dtype=np.float64)
        self.fits = np.array([c.fits_context for c in candidates], dtype=bool)
        self.fits_output = np.array([c.fits_output for c in candidates], dtype=bool)
        self.enabled = np.array([c.enabled for c in candidates], dtype=bool)
        self.open_ended_base = np.array([c.open_ended_base for c in candidates], dtype=bool)
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise SelectorInputError(f"duplicate candidate model(s): {', '.join(dup)}")
        bad = ~(np.isfinite(self.quality) & (self.quality >= 0) & (self.quality <= 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SelectorInputError(f"candidate {self.names[i]} has quality {self.quality[i]!r}, expected a number in [0, 1]")
        self.low = np.array([c.low_confidence is not None for c in candidates], dtype=bool)
        self.floor_quality = self.quality if cons.allow_low_confidence else np.where(self.low, 0.0, self.quality)

    def set_quality(self, quality: np.ndarray, members: np.ndarray) -> np.ndarray:
        """Quality of each set in `members` ([size, C] indices into `quality`)."""
        if self.rho == 0.0:
            return set_quality(member_sum(log_miss(quality), members))
        return correlated_set_quality(quality[members], self.rho, axis=0)

    def meets_floor(self, members: np.ndarray, min_quality: float | None) -> np.ndarray:
        """Which sets in `members` reach the floor with what counts towards it."""
        if min_quality is None:
            return np.ones(members.shape[1], dtype=bool)
        if self.rho == 0.0:  # in log space, as the ILP states it, so both paths agree exactly
            return member_sum(log_miss(self.floor_quality), members) <= floor_limit(min_quality)
        return self.set_quality(self.floor_quality, members) >= min_quality * (1 - REL_TOL)

    def resolve(self, names: Sequence[str], what: str) -> np.ndarray:
        """Mask of candidates named (by name or alias) in an allow- or deny-list."""
        lookup = {}
        for i, c in enumerate(self.candidates):
            for key in (c.name, *c.aliases):
                lookup[key] = i
        mask = np.zeros(len(self.names), dtype=bool)
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise SelectorInputError(f"unknown model(s) in {what}: {', '.join(unknown)}")
        mask[[lookup[n] for n in names]] = True
        return mask


def _exclusions(pool: _Pool, cons: SelectionConstraints) -> list[list[str]]:
    """Per candidate, every constraint that rules it out on its own."""
    n = len(pool.names)
    checks: list[tuple[str, np.ndarray]] = [("disabled", ~pool.enabled)]
    if cons.exclude:
        checks.append(("deny-list", pool.resolve(cons.exclude, "exclude (deny-list)")))
    if cons.models is not None:
        checks.append(("not in allow-list", ~pool.resolve(cons.models, "models (allow-list)")))
    checks.append(("context window", ~pool.fits))
    checks.append(("max output tokens", ~pool.fits_output))
    if not cons.allow_base_models:
        checks.append((BASE_ON_OPEN_ENDED, pool.open_ended_base))
    for capability in dict.fromkeys(cons.requires):
        checks.append((LACKS[capability], np.array([capability not in c.capabilities for c in pool.candidates],
                                                   dtype=bool)))
    if cons.max_latency_ms is not None:
        checks.append(("latency cap", pool.latency > cons.max_latency_ms))
    if cons.max_cost_usd is not None:  # costs are >= 0, so a set costs at least each member
        checks.append(("cost cap", pool.cost > cost_limit(cons.max_cost_usd)))
    if cons.min_quality is not None and cons.max_models == 1:
        misses = ~meets_floor(pool.quality, cons.min_quality)
        checks.append(("quality floor", misses))
        if not cons.allow_low_confidence:
            checks.append(("low confidence", pool.low & ~misses))
    reasons: list[list[str]] = [[] for _ in range(n)]
    for label, mask in checks:
        for i in np.flatnonzero(mask).tolist():
            reasons[i].append(label)
    return reasons


def _objective(cons: SelectionConstraints, quality, cost):
    """(value, sort key to minimise) for arrays of set qualities and costs."""
    if cons.objective == "min_cost":
        return cost, cost
    if cons.objective == "max_quality":
        return quality, -quality
    # Net value in USD: what the caller would pay for the quality, minus what it costs. This is the
    # issue's q - lambda' * cost with lambda' = 1 / willingness_to_pay, in units that stay finite at 0.
    value = cons.willingness_to_pay * quality - cost
    return value, -value


def _best_set(pool: _Pool, idx: np.ndarray, cons: SelectionConstraints, method: str) -> list[int] | None:
    """Exact optimum over sets of size 1..max_models drawn from candidate indices `idx`."""
    q, c = pool.quality[idx], pool.cost[idx]
    k = min(cons.max_models, idx.size)
    if method == "ilp":  # linear in log(1 - q): independent errors; a low-confidence model counts as 0 there
        local = solve_set_ilp(pool.floor_quality[idx] if cons.min_quality is not None else q, c, k=k, min_quality=cons.min_quality, max_cost=cons.max_cost_usd,
                              objective=cons.objective, willingness_to_pay=cons.willingness_to_pay)
        return None if local is None else idx[local].tolist()
    if k > 1:  # drop models strictly dominated by >= k others: some dominator is always free to swap in
        fq = pool.floor_quality[idx]  # a dominator must count as much towards the floor too
        better = ((q[None, :] >= q[:, None]) & (fq[None, :] >= fq[:, None]) & (c[None, :] <= c[:, None])
                  & ((q[None, :] > q[:, None]) | (c[None, :] < c[:, None])))
        keep = better.sum(axis=1) < k
        idx, q, c = idx[keep], q[keep], c[keep]
    c_lim = cost_limit(cons.max_cost_usd)
    best_key, best = None, None
    for size in range(1, k + 1):
        combos = subsets(idx.size, size)
        members, s_cost = idx[combos], member_sum(c, combos)
        rows = np.flatnonzero(pool.meets_floor(members, cons.min_quality) & (s_cost <= c_lim))
        if not rows.size:
            continue
        s_q, s_cost = pool.set_quality(pool.quality, members[:, rows]), s_cost[rows]
        _, key = _objective(cons, s_q, s_cost)
        # Ties: lower objective key, then higher quality, then cheaper; smaller sets win (seen first).
        ties = np.flatnonzero(key == key.min())
        j = ties[np.lexsort((s_cost[ties], -s_q[ties]))[0]] if ties.size > 1 else ties[0]
        cand_key = (key[j], -s_q[j], s_cost[j])
        if best_key is None or cand_key < best_key:
            best_key, best = cand_key, idx[combos[:, rows[j]]].tolist()
    return best


def _set_blockers(pool: _Pool, idx: np.ndarray, cons: SelectionConstraints) -> dict[int, list[str]]:
    """Why each individually admissible model still belongs to no feasible set (max_models > 1).

    The best quality a set containing m can reach is m plus the k-1 best others; if that misses
    the floor, the floor blocks m, otherwise every set that reaches the floor breaks the cost cap.
    """
    k = min(cons.max_models, idx.size)
    out = {}
    for i in idx.tolist():
        others = idx[idx != i]
        best = np.concatenate(([i], others[np.argsort(-pool.floor_quality[others])][: k - 1]))
        out[i] = ["cost cap"] if pool.meets_floor(best[:, None], cons.min_quality)[0] else ["quality floor"]
    return out


def select_models(
    candidates: Sequence[Candidate], constraints: SelectionConstraints, *, method: Method = "auto",
    set_rho: float = 0.0,
) -> Decision:
    """Choose the model (or parallel set of up to `max_models`) for one request.

    `set_rho`: the share of a set's failures that are common-mode (see Decision). With it above 0
    the exact enumeration decides sets of any pool size; method='ilp' states the floor for
    independent errors (rho 0), which overstates a set's quality.

    Raises InfeasibleSelection (with the constraints blocking each model) when nothing fits and
    `on_infeasible` is 'error', or when even a fallback has no model allowed by the hard
    constraints (lists, disabled, context window, max output tokens, base models).
    """
    cons = constraints
    pool = _Pool(candidates, cons, set_rho)
    reasons = _exclusions(pool, cons)
    feasible = np.array([not r for r in reasons], dtype=bool)
    idx = np.flatnonzero(feasible)
    if method == "auto":
        small = idx.size <= ENUMERATION_LIMIT or pool.rho > 0
        method = "scan" if cons.max_models == 1 else ("enumeration" if small else "ilp")
    if method == "scan" and cons.max_models != 1:
        raise SelectorInputError("method 'scan' handles max_models = 1 only")
    chosen = _best_set(pool, idx, cons, method) if idx.size else None
    fallback, violates = None, []
    if chosen is None:
        if cons.max_models > 1 and idx.size:
            for i, why in _set_blockers(pool, idx, cons).items():
                reasons[i] = why
        blocking = {pool.names[i]: reasons[i] for i in range(len(pool.names))}
        if cons.on_infeasible == "error":
            raise InfeasibleSelection(blocking)
        chosen, violates = _fallback(pool, reasons, cons)
        if chosen is None:
            raise InfeasibleSelection(blocking, InfeasibleSelection._describe(blocking)
                                      + f"; no model passes the hard constraints for fallback '{cons.on_infeasible}'")
        fallback = cons.on_infeasible
    return _decision(pool, reasons, chosen, cons, method, fallback, violates)


def _fallback(pool: _Pool, reasons: list[list[str]], cons: SelectionConstraints) -> tuple[list[int] | None, list[str]]:
    """Among the models no hard constraint forbids: the cheapest single model, or the best-quality
    set of up to `max_models` (the most likely to answer, as a feasible request would get with
    `objective: max_quality`); with the soft constraints the choice breaks."""
    hard_ok = np.array([not any(r in HARD_REASONS for r in why) for why in reasons], dtype=bool)
    if not hard_ok.any():
        return None, []
    idx = np.flatnonzero(hard_ok)
    if cons.on_infeasible == "cheapest":
        chosen = [int(idx[np.lexsort((-pool.quality[idx], pool.cost[idx]))[0]])]
    else:  # set quality 1 - prod(1 - q) grows with each member that can answer: the k best, cheaper first on ties
        ranked = idx[np.lexsort((pool.cost[idx], -pool.quality[idx]))]
        chosen = [int(ranked[0])] + [int(i) for i in ranked[1 : cons.max_models] if pool.quality[i] > 0]
    members = np.array(chosen, dtype=np.intp)
    broken = {  # judged on the set, as a feasible one is: slowest member, summed cost, 1 - prod(1 - q)
        "latency cap": cons.max_latency_ms is not None and pool.latency[members].max() > cons.max_latency_ms,
        "cost cap": cons.max_cost_usd is not None and pool.cost[members].sum() > cost_limit(cons.max_cost_usd),
        "quality floor": not pool.meets_floor(members[:, None], cons.min_quality)[0],
        "low confidence": cons.min_quality is not None and not cons.allow_low_confidence and bool(pool.low[members].any()),
    }
    return chosen, [r for r in SOFT_REASONS if broken[r]]


def _decision(pool, reasons, chosen, cons, method, fallback, violates) -> Decision:
    members = np.array(chosen, dtype=np.intp)
    quality = float(pool.set_quality(pool.quality, members[:, None])[0])
    cost = float(pool.cost[members].sum())
    value, _ = _objective(cons, np.float64(quality), np.float64(cost))
    chosen_set = set(chosen)
    # Plain dicts: pydantic validates the list in one pass, faster than building each model.
    reports = [
        {"name": c.name, "quality": c.quality, "cost_usd": c.cost_usd, "latency_ms": c.latency_ms,
         "fits_context": c.fits_context, "fits_output": c.fits_output, "low_confidence": c.low_confidence, "support": c.support,
         "evidence_rows": c.evidence_rows, "output_tokens": c.output_tokens, "excluded_by": reasons[i],
         "chosen": i in chosen_set}
        for i, c in enumerate(pool.candidates)
    ]
    return Decision(
        chosen=[pool.names[i] for i in chosen],
        quality=quality,
        cost_usd=cost,
        latency_ms=float(pool.latency[members].max()),
        objective=cons.objective,
        objective_value=float(value),
        method=method,
        fallback=fallback,
        violates=violates,
        low_confidence={pool.names[i]: pool.candidates[i].low_confidence for i in chosen
                        if pool.candidates[i].low_confidence},
        candidates=reports,
    )


def ranking(decision: Decision, constraints: SelectionConstraints) -> list[str]:
    """The single models of a decision in the order a caller should try them: the chosen model, then
    every other candidate that meets all of the request's constraints on its own, best first by the
    decision's objective (ties as `select_models` breaks them: higher quality, then cheaper).

    A candidate excluded by anything (the quality floor, a low-confidence quality, a cap, the lists)
    is never in it, so falling back down the ranking never goes below what the request asked for.
    When the decision is itself a fallback (`on_infeasible`), nothing else meets the constraints and
    the ranking is the chosen model alone.
    """
    if len(decision.chosen) != 1:
        raise SelectorInputError("a ranking is of single models: the decision chose a set (max_models > 1)")
    chosen = decision.chosen[0]
    rest = [c for c in decision.candidates if not c.excluded_by and c.name != chosen]
    if not rest:
        return [chosen]
    quality = np.array([c.quality for c in rest], dtype=np.float64)
    cost = np.array([c.cost_usd for c in rest], dtype=np.float64)
    _, key = _objective(constraints, quality, cost)
    order = np.lexsort((cost, -quality, key))
    return [chosen, *(rest[i].name for i in order)]
