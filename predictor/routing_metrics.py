"""Routing metrics, exactly as ../shared/METRICS.md defines them (pure numpy).

A router is judged by the cost-quality points it can reach on held-out prompts. The
willingness-to-pay router sends prompt i to argmax_m q̂[i,m] − λ·ĉ[i,m] and a sweep over λ
traces its curve. It decides with ESTIMATED cost ĉ only: the realised per-prompt cost depends
on the answer's length, and failing answers are often longer, so deciding with it would leak
the label. Realised cost and quality are used only to score the picks.

Conventions used throughout:
- quality / cost / q̂ / ĉ are [N, M] arrays; a (prompt, model) pair "has a result" where both
  the true quality and the realised cost are finite. A router may only pick such a pair; a
  prompt with no result at all is dropped from every figure.
- Single-model points are means over the prompts where that model has a result (in the
  MMLU-57 table 7 of 9 models answered only ~40% of the prompts).
- A hull is a (costs, qualities) pair of 1-d arrays, increasing in both coordinates.
- Degenerate inputs (one point, equal costs, zero headroom) never give a silent NaN: such
  figures are NaN together with a note in `notes` explaining why (see `Notes`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

N_LAMBDAS = 400
ECE_BINS = 15
# Elements per λ-chunk in the sweep (λ x prompts x models), bounding the temporary memory.
_SWEEP_CHUNK_ELEMENTS = 4_000_000


class Notes(list):
    """Human-readable explanations of degenerate figures; passed down so NaN is never silent."""

    def add(self, message: str) -> None:
        if message not in self:
            self.append(message)


# ----------------------------------------------------------------------------- masks & sweep


def result_mask(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """[N, M] bool: pairs with both a true quality and a realised cost."""
    return np.isfinite(quality) & np.isfinite(cost)


def _check_shapes(**arrays: np.ndarray) -> None:
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise ValueError(f"expected equal [N, M] arrays, got shapes {shapes}")


def lambda_grid(c_hat: np.ndarray, mask: np.ndarray, n: int = N_LAMBDAS) -> np.ndarray:
    """λ values for the sweep: 0, then log-spaced over the range where the cost term matters, then ∞.

    The scale comes from the per-prompt spread of estimated cost between the models it may
    pick: at the low end λ·spread is 1e-4 (quality decides alone, like λ=0), at the high end
    it is 1e2 even for the prompts with the smallest spread (cost decides). λ=∞ is kept as an
    explicit last value so the "always the cheapest" point is always on the curve.
    """
    if n < 3:
        raise ValueError(f"need at least 3 λ values, got {n}")
    masked = np.where(mask, c_hat, np.nan)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(masked, axis=1) - np.nanmin(masked, axis=1)
    spread = spread[np.isfinite(spread) & (spread > 0)]
    if spread.size == 0:  # every prompt has one candidate or equal costs: λ changes nothing
        lo, hi = 1.0, 10.0
    else:
        lo = 1e-4 / np.quantile(spread, 0.99)
        hi = 1e2 / max(np.quantile(spread, 0.01), 1e-12 * spread.max())
    return np.concatenate([[0.0], np.geomspace(lo, hi, n - 2), [np.inf]])


def sweep_picks(q_hat: np.ndarray, c_hat: np.ndarray, mask: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """[L, N] int: the model picked for each prompt at each λ (argmax q̂ − λ ĉ among `mask`).

    Rows of `mask` with no True are given pick 0; callers drop those prompts. At λ=∞ the
    cheapest estimated model wins and ties go to the higher q̂.
    """
    n, m = q_hat.shape
    if not np.all(np.isfinite(q_hat[mask])):
        raise ValueError("predicted quality q̂ is NaN/inf on a pair that has a result")
    if not np.all(np.isfinite(c_hat[mask])):
        raise ValueError("estimated cost ĉ is NaN/inf on a pair that has a result")
    q = np.where(mask, q_hat, 0.0)
    c = np.where(mask, c_hat, 0.0)
    blocked = np.where(mask, 0.0, -np.inf)
    picks = np.empty((len(lambdas), n), dtype=np.int32)
    finite = np.isfinite(lambdas)
    lam = lambdas[finite]
    chunk = max(1, _SWEEP_CHUNK_ELEMENTS // max(1, n * m))
    out_rows = np.flatnonzero(finite)
    for start in range(0, len(lam), chunk):
        lam_chunk = lam[start : start + chunk, None, None]
        scores = q[None] - lam_chunk * c[None] + blocked[None]
        picks[out_rows[start : start + chunk]] = np.argmax(scores, axis=2)
    if (~finite).any():
        cheapest = np.where(mask, c_hat, np.inf)
        is_min = mask & (cheapest <= cheapest.min(axis=1, keepdims=True))
        picks[~finite] = np.argmax(np.where(is_min, q_hat, -np.inf), axis=1)
    return picks


def picked_values(values: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """[L, N] values[i, picks[l, i]]."""
    return values[np.arange(values.shape[0])[None, :], picks]


@dataclass
class SweepCurve:
    """The λ sweep of one router on the prompts kept (those with at least one result)."""

    lambdas: np.ndarray  # [L]
    picks: np.ndarray  # [L, N_kept]
    costs: np.ndarray  # [L] mean realised cost
    qualities: np.ndarray  # [L] mean realised quality


def router_sweep(
    q_hat: np.ndarray,
    c_hat: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    n_lambdas: int = N_LAMBDAS,
    lambdas: np.ndarray | None = None,
) -> SweepCurve:
    """Sweep the willingness-to-pay router; points are (mean realised cost, mean realised quality).

    Only prompts with at least one result are scored (see `kept_prompts`).
    """
    _check_shapes(q_hat=q_hat, c_hat=c_hat, quality=quality, cost=cost)
    mask = result_mask(quality, cost)
    keep = mask.any(axis=1)
    mask, q_hat, c_hat = mask[keep], q_hat[keep], c_hat[keep]
    quality, cost = quality[keep], cost[keep]
    if lambdas is None:
        lambdas = lambda_grid(c_hat, mask, n_lambdas)
    picks = sweep_picks(q_hat, c_hat, mask, np.asarray(lambdas, dtype=np.float64))
    return SweepCurve(
        lambdas=np.asarray(lambdas),
        picks=picks,
        costs=picked_values(cost, picks).mean(axis=1),
        qualities=picked_values(quality, picks).mean(axis=1),
    )


def kept_prompts(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """[N] bool: prompts with at least one result (the only ones any figure is computed on)."""
    return result_mask(quality, cost).any(axis=1)


# ----------------------------------------------------------------------------- points & hulls


def single_model_points(quality: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-model (mean realised cost, mean quality) over the prompts where it has a result.

    A model with no result at all gets NaN for both (and is ignored by the hull functions).
    """
    mask = result_mask(quality, cost)
    counts = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_cost = np.where(mask, cost, 0.0).sum(axis=0) / counts
        mean_quality = np.where(mask, quality, 0.0).sum(axis=0) / counts
    return mean_cost, mean_quality


def oracle_choice(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """[N] int: per prompt the cheapest (realised cost) model among those with the highest true quality."""
    mask = result_mask(quality, cost)
    q = np.where(mask, quality, -np.inf)
    best = mask & (q >= q.max(axis=1, keepdims=True))
    return np.argmin(np.where(best, cost, np.inf), axis=1)


def oracle_point(quality: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    """(mean cost, mean quality) of the oracle over the prompts with at least one result."""
    keep = kept_prompts(quality, cost)
    choice = oracle_choice(quality[keep], cost[keep])
    rows = np.arange(choice.size)
    return float(cost[keep][rows, choice].mean()), float(quality[keep][rows, choice].mean())


def ndch(costs: np.ndarray, qualities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing upper convex hull of cost-quality points, as increasing (costs, qualities).

    Random mixing of two settings reaches every point of the segment between them, and a
    point dominated by a cheaper, better one is never worth using; so only Pareto points
    matter, and of those the upper concave hull. Non-finite points are ignored; equal costs
    keep the best quality.
    """
    costs = np.asarray(costs, dtype=np.float64).ravel()
    qualities = np.asarray(qualities, dtype=np.float64).ravel()
    ok = np.isfinite(costs) & np.isfinite(qualities)
    costs, qualities = costs[ok], qualities[ok]
    if costs.size == 0:
        return costs, qualities
    order = np.lexsort((-qualities, costs))  # by cost, best quality first among equal costs
    costs, qualities = costs[order], qualities[order]
    # Pareto: keep a point only if it beats every cheaper (or equally cheap, earlier) point.
    prev_best = np.concatenate([[-np.inf], np.maximum.accumulate(qualities)[:-1]])
    pareto = qualities > prev_best
    costs, qualities = costs[pareto], qualities[pareto]
    hull_c: list[float] = []
    hull_q: list[float] = []
    for c, q in zip(costs, qualities):
        # pop the last point while it lies on or below the chord from its predecessor to (c, q)
        while len(hull_c) >= 2:
            c1, q1, c2, q2 = hull_c[-2], hull_q[-2], hull_c[-1], hull_q[-1]
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):
                hull_c.pop()
                hull_q.pop()
            else:
                break
        hull_c.append(c)
        hull_q.append(q)
    return np.array(hull_c), np.array(hull_q)


def oracle_hull(single_costs: np.ndarray, single_qualities: np.ndarray, oracle_cost: float,
                oracle_quality: float) -> tuple[np.ndarray, np.ndarray]:
    """The oracle's NDCH: its point together with the single-model points.

    The oracle can also send everything to one model, and mixing settings at random reaches the
    segments between them (the NDCH rule), so its hull is that of all these points. With its
    point alone the hull would be 0 below the oracle's cost, and where the cheapest models are
    far cheaper than the oracle point (MMLU-57: 7 models at a flat 2.3e-5 USD) the "oracle" would
    score below the zero router, making the capture denominator tiny or negative. With the
    single points included AIQ_oracle >= AIQ_zero always.
    """
    return ndch(np.append(single_costs, oracle_cost), np.append(single_qualities, oracle_quality))


def ndch_value(hull: tuple[np.ndarray, np.ndarray], c: float | np.ndarray) -> np.ndarray:
    """NDCH quality at cost(s) c: 0 left of the cheapest hull point, flat right of the last."""
    hc, hq = hull
    c = np.asarray(c, dtype=np.float64)
    if hc.size == 0:
        return np.zeros_like(c)
    inside = np.interp(c, hc, hq)  # np.interp is flat beyond both ends
    return np.where(c < hc[0], 0.0, inside)


def aiq(hull: tuple[np.ndarray, np.ndarray], c_max: float) -> float:
    """Average improvement in quality (RouterBench): ∫_0^{c_max} NDCH(c) dc / c_max.

    With c_max = 0 (every single model is free) the integral degenerates; the limit, the
    hull's quality at cost 0, is returned.
    """
    hc, hq = hull
    if hc.size == 0:
        return 0.0
    if not np.isfinite(c_max) or c_max < 0:
        raise ValueError(f"c_max must be a finite cost >= 0, got {c_max}")
    if c_max == 0:
        return float(ndch_value(hull, 0.0))
    if hc[0] >= c_max:
        return 0.0
    xs = np.concatenate([hc[hc < c_max], [c_max]])
    ys = ndch_value(hull, xs)
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0) / c_max)


def table_aiq(hull: tuple[np.ndarray, np.ndarray], c_min: float, c_max: float) -> float:
    """AIQ with the table's single-model cost range [c_min, c_max].

    When every single model has the same mean cost (c_min = c_max) the integral is over a range
    where every hull is still 0, so it says nothing; the hull's quality at that cost is used.
    """
    if c_min >= c_max:
        return float(ndch_value(hull, c_max))
    return aiq(hull, c_max)


def headroom_capture(aiq_router: float, aiq_zero: float, aiq_oracle: float, notes: Notes | None = None) -> float:
    """(AIQ_router − AIQ_zero) / (AIQ_oracle − AIQ_zero): 0 = prompt-blind, 1 = oracle."""
    headroom = aiq_oracle - aiq_zero
    if not headroom > 1e-12:
        if notes is not None:
            notes.add(f"capture undefined: the oracle has no headroom over the zero router "
                      f"(AIQ oracle {aiq_oracle:.4g} vs zero {aiq_zero:.4g})")
        return math.nan
    return (aiq_router - aiq_zero) / headroom


def best_single_model(mean_cost: np.ndarray, mean_quality: np.ndarray) -> int:
    """Index of the best single model: highest mean quality, ties to the cheaper one."""
    q = np.where(np.isfinite(mean_quality), mean_quality, -np.inf)
    c = np.where(np.isfinite(mean_cost), mean_cost, np.inf)
    if not np.isfinite(q).any():
        raise ValueError("no model has any result")
    return int(np.lexsort((c, -q))[0])


def cost_to_match(hull: tuple[np.ndarray, np.ndarray], best_cost: float, best_quality: float) -> float:
    """c2m: smallest cost on the NDCH reaching `best_quality`, divided by `best_cost`; ∞ if never.

    A tolerance of 1e-12 absorbs float noise when a router's hull passes through the best
    model's own point. With `best_cost` = 0 the ratio is 0 if a free point reaches it, else ∞.
    """
    hc, hq = hull
    target = best_quality - 1e-12
    reached = np.flatnonzero(hq >= target)
    if reached.size == 0:
        return math.inf
    k = reached[0]
    if k == 0:
        c = hc[0]
    else:  # linear between hull points k-1 (below target) and k (at or above)
        frac = (target - hq[k - 1]) / (hq[k] - hq[k - 1])
        c = hc[k - 1] + frac * (hc[k] - hc[k - 1])
    if best_cost <= 0:
        return 0.0 if c <= 0 else math.inf
    return float(c / best_cost)


def gain_at_cost(hull: tuple[np.ndarray, np.ndarray], best_cost: float, best_quality: float) -> float:
    """NDCH quality at the best single model's cost minus that model's quality."""
    return float(ndch_value(hull, best_cost)) - best_quality


# ----------------------------------------------------------------------------- calibration


def brier(q_hat: np.ndarray, quality: np.ndarray) -> float:
    """mean((q̂ − q)²) over the pairs with a true quality (soft labels allowed)."""
    mask = np.isfinite(quality)
    if not mask.any():
        return math.nan
    return float(np.mean((q_hat[mask] - quality[mask]) ** 2))


def ece(q_hat: np.ndarray, quality: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error over `n_bins` equal-width bins of q̂ in [0, 1].

    Σ_b (n_b / n) |mean q̂_b − mean q_b| over pairs with a true quality; q̂ = 1 falls in the last bin.
    """
    mask = np.isfinite(quality)
    p, y = np.clip(q_hat[mask], 0.0, 1.0), quality[mask]
    if p.size == 0:
        return math.nan
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, p, n_bins) - np.bincount(bins, y, n_bins))
    return float(gap.sum() / counts.sum())


# ----------------------------------------------------------------------------- RouteLLM slice


def pgr_curve(score: np.ndarray, q_strong: np.ndarray, q_weak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Performance gap recovered vs the share of calls sent to the strong model.

    Prompts go to the strong model in decreasing order of `score`. Prompts with equal scores
    are sent as a block at random, so within a block the curve is linear (its expectation).
    Returns (share in [0, 1], PGR) with n+1 points.
    """
    n = score.size
    gap = q_strong.mean() - q_weak.mean()
    _, inverse = np.unique(-score, return_inverse=True)  # block 0 = highest score
    delta = q_strong - q_weak
    block_mean = np.bincount(inverse, delta) / np.bincount(inverse)
    order = np.argsort(inverse, kind="stable")
    gained = np.concatenate([[0.0], np.cumsum(block_mean[inverse[order]])]) / n
    share = np.arange(n + 1) / n
    return share, gained / gap


def apgr_cpt(
    score: np.ndarray, q_strong: np.ndarray, q_weak: np.ndarray, target: float = 0.5, notes: Notes | None = None
) -> tuple[float, float]:
    """RouteLLM's APGR (area under PGR vs strong-call share) and CPT(target) (the share needed for PGR ≥ target).

    NaN (with a note) when the two models have the same mean quality (no gap to recover).
    """
    if score.size == 0 or not abs(q_strong.mean() - q_weak.mean()) > 1e-12:
        if notes is not None:
            notes.add("APGR/CPT undefined: the strongest and cheapest models have no quality gap "
                      "on the prompts both answered")
        return math.nan, math.nan
    share, pgr = pgr_curve(score, q_strong, q_weak)
    area = float(np.sum((share[1:] - share[:-1]) * (pgr[1:] + pgr[:-1]) / 2.0))
    hit = np.flatnonzero(pgr >= target - 1e-12)
    if hit.size == 0:
        return area, math.nan
    k = hit[0]
    if k == 0:
        return area, 0.0
    frac = (target - pgr[k - 1]) / (pgr[k] - pgr[k - 1])
    return area, float(share[k - 1] + frac * (share[k] - share[k - 1]))


def strong_weak_pair(mean_cost: np.ndarray, mean_quality: np.ndarray) -> tuple[int, int]:
    """(strongest, cheapest) model indices for the two-model slice; the cheapest excludes the strongest."""
    strong = best_single_model(mean_cost, mean_quality)
    c = np.where(np.isfinite(mean_cost), mean_cost, np.inf)
    c[strong] = np.inf
    q = np.where(np.isfinite(mean_quality), mean_quality, -np.inf)
    if not np.isfinite(c).any():
        return strong, strong
    weak = int(np.lexsort((-q, c))[0])  # cheapest, ties to the better one
    return strong, weak


# ----------------------------------------------------------------------------- all figures of one table


class Interval(BaseModel):
    """Bootstrap summary of one figure: mean, standard deviation and the 95% percentile interval."""

    mean: float | None
    std: float | None
    lo: float | None
    hi: float | None
    n: int  # resamples where the figure was defined


class RouterFigures(BaseModel):
    """Every METRICS.md figure of one router on one table. None = not applicable / undefined (see notes)."""

    aiq: float
    capture: float | None
    c2m: float | None  # None = never matches the best single model (∞)
    gain_at_best_cost: float
    brier: float | None = None  # only routers that predict q̂
    ece: float | None = None
    apgr: float | None = None
    cpt50: float | None = None
    hull: list[tuple[float, float]]  # NDCH points (cost, quality), increasing
    capture_bootstrap: Interval | None = None
    capture_diff_bootstrap: Interval | None = None  # reference router − this one, paired


class SingleModel(BaseModel):
    name: str
    cost: float | None
    quality: float | None
    n: int  # prompts where it has a result


class TableFigures(BaseModel):
    """The routing figures of one table: single models, zero router, oracle and every router."""

    n_prompts: int
    c_max: float
    single_models: list[SingleModel]
    best_model: SingleModel
    oracle_point: tuple[float, float]  # (mean cost, mean quality) of the per-prompt oracle
    strong_weak: tuple[str, str]  # the APGR/CPT two-model slice
    routers: dict[str, RouterFigures]  # includes "zero" and "oracle"
    reference: str | None  # the router the paired bootstrap differences are taken against
    n_bootstrap: int
    notes: list[str]


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _interval(samples: np.ndarray) -> Interval:
    ok = samples[np.isfinite(samples)]
    if ok.size == 0:
        return Interval(mean=None, std=None, lo=None, hi=None, n=0)
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return Interval(mean=float(ok.mean()), std=float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
                    lo=float(lo), hi=float(hi), n=int(ok.size))


def _resample_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[B, n] counts of each prompt in each resample (same resamples for every router: paired)."""
    draws = rng.integers(0, n, size=(n_boot, n))
    weights = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(weights, (np.arange(n_boot)[:, None], draws), 1.0)
    return weights


def _weighted_sweep_means(values: np.ndarray, picks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[L, B] resampled means of the picked values at every λ, computed in λ chunks to bound memory."""
    n = values.shape[0]
    out = np.empty((picks.shape[0], weights.shape[0]))
    for start in range(0, picks.shape[0], 64):
        out[start : start + 64] = picked_values(values, picks[start : start + 64]) @ weights.T / n
    return out


def routing_figures(
    quality: np.ndarray,
    cost: np.ndarray,
    c_hat: np.ndarray,
    predictions: dict[str, np.ndarray],
    model_names: list[str],
    *,
    reference: str | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    n_lambdas: int = N_LAMBDAS,
) -> TableFigures:
    """Every figure of METRICS.md for the routers in `predictions` (name -> q̂ [N, M]), plus zero and oracle.

    `c_hat` is the estimated cost the routers decide with; `cost` the realised cost they are
    scored with. The paired bootstrap resamples prompts with the same indices for every router
    and reports each router's capture and, if `reference` is given, reference − router.
    """
    _check_shapes(quality=quality, cost=cost, c_hat=c_hat, **predictions)
    if len(model_names) != quality.shape[1]:
        raise ValueError(f"{len(model_names)} model names for {quality.shape[1]} columns")
    if reference is not None and reference not in predictions:
        raise ValueError(f"reference router {reference!r} not among {sorted(predictions)}")
    notes = Notes()
    keep = kept_prompts(quality, cost)
    if not keep.any():
        raise ValueError("no prompt has a result (true quality and realised cost) for any model")
    if (~keep).any():
        notes.add(f"{int((~keep).sum())} prompts without any result were dropped")
    quality, cost, c_hat = quality[keep], cost[keep], c_hat[keep]
    predictions = {name: q[keep] for name, q in predictions.items()}
    mask = result_mask(quality, cost)
    n = quality.shape[0]

    single_c, single_q = single_model_points(quality, cost)
    counts = mask.sum(axis=0)
    singles = [SingleModel(name=m, cost=_finite_or_none(c), quality=_finite_or_none(q), n=int(k))
               for m, c, q, k in zip(model_names, single_c, single_q, counts)]
    best = best_single_model(single_c, single_q)
    best_c, best_q = float(single_c[best]), float(single_q[best])
    c_max, c_min = float(np.nanmax(single_c)), float(np.nanmin(single_c))
    if c_min >= c_max:
        notes.add("every single model has the same mean cost: AIQ is the hull's quality at that cost")
    strong, weak = strong_weak_pair(single_c, single_q)
    pair = mask[:, strong] & mask[:, weak]

    def figures(hull, q_hat=None, apgr_score=None) -> RouterFigures:
        apgr = cpt = None
        if apgr_score is not None and strong != weak:
            a, c = apgr_cpt(apgr_score[pair], quality[pair, strong], quality[pair, weak], notes=notes)
            apgr, cpt = _finite_or_none(a), _finite_or_none(c)
        return RouterFigures(
            aiq=table_aiq(hull, c_min, c_max),
            capture=None,
            c2m=_finite_or_none(cost_to_match(hull, best_c, best_q)),
            gain_at_best_cost=gain_at_cost(hull, best_c, best_q),
            brier=None if q_hat is None else _finite_or_none(brier(q_hat, np.where(mask, quality, np.nan))),
            ece=None if q_hat is None else _finite_or_none(ece(q_hat, np.where(mask, quality, np.nan))),
            apgr=apgr,
            cpt50=cpt,
            hull=list(zip(*(a.tolist() for a in hull))),
        )

    rows = np.arange(n)
    choice = oracle_choice(quality, cost)
    oracle_c, oracle_q = cost[rows, choice], quality[rows, choice]
    out: dict[str, RouterFigures] = {
        "zero": figures(ndch(single_c, single_q), apgr_score=np.zeros(n)),
        "oracle": figures(oracle_hull(single_c, single_q, oracle_c.mean(), oracle_q.mean()),
                          apgr_score=quality[:, strong] - quality[:, weak]),
    }
    lambdas = lambda_grid(c_hat, mask, n_lambdas)
    sweeps: dict[str, np.ndarray] = {}
    for name, q_hat in predictions.items():
        curve = router_sweep(q_hat, c_hat, quality, cost, lambdas=lambdas)
        sweeps[name] = curve.picks
        out[name] = figures(ndch(curve.costs, curve.qualities), q_hat=q_hat,
                            apgr_score=q_hat[:, strong] - q_hat[:, weak])
    for fig in out.values():
        fig.capture = _finite_or_none(headroom_capture(fig.aiq, out["zero"].aiq, out["oracle"].aiq, notes))

    if n_bootstrap > 0 and predictions:
        rng = np.random.default_rng(seed)
        weights = _resample_weights(n, n_bootstrap, rng)
        qm, cm = np.where(mask, quality, 0.0), np.where(mask, cost, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            seen = weights @ mask
            boot_single_c, boot_single_q = (weights @ cm) / seen, (weights @ qm) / seen
        boot_oracle_c, boot_oracle_q = weights @ oracle_c / n, weights @ oracle_q / n
        boot_cmax, boot_cmin = np.nanmax(boot_single_c, axis=1), np.nanmin(boot_single_c, axis=1)
        aiq_zero = np.array([table_aiq(ndch(boot_single_c[b], boot_single_q[b]), boot_cmin[b], boot_cmax[b])
                             for b in range(n_bootstrap)])
        aiq_oracle = np.array([table_aiq(oracle_hull(boot_single_c[b], boot_single_q[b], boot_oracle_c[b],
                                                     boot_oracle_q[b]), boot_cmin[b], boot_cmax[b])
                               for b in range(n_bootstrap)])
        headroom = aiq_oracle - aiq_zero
        headroom = np.where(headroom > 1e-12, headroom, np.nan)
        captures: dict[str, np.ndarray] = {}
        for name, picks in sweeps.items():
            bc = _weighted_sweep_means(cost, picks, weights)
            bq = _weighted_sweep_means(quality, picks, weights)
            aiqs = np.array([table_aiq(ndch(bc[:, b], bq[:, b]), boot_cmin[b], boot_cmax[b])
                             for b in range(n_bootstrap)])
            captures[name] = (aiqs - aiq_zero) / headroom
            out[name].capture_bootstrap = _interval(captures[name])
        if reference is not None:
            for name in captures:
                if name != reference:
                    out[name].capture_diff_bootstrap = _interval(captures[reference] - captures[name])
        if np.isnan(headroom).any():
            notes.add(f"{int(np.isnan(headroom).sum())} of {n_bootstrap} bootstrap resamples had no "
                      "oracle headroom and were left out of the intervals")

    return TableFigures(
        n_prompts=n,
        c_max=c_max,
        single_models=singles,
        best_model=singles[best],
        oracle_point=(float(oracle_c.mean()), float(oracle_q.mean())),
        strong_weak=(model_names[strong], model_names[weak]),
        routers=out,
        reference=reference,
        n_bootstrap=max(0, n_bootstrap),
        notes=list(notes),
    )
