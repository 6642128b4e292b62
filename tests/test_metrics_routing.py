"""Routing metrics on cases small enough to compute by hand (see the comments for the arithmetic)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from pickwise.predictor.routing_metrics import (
    aiq,
    apgr_cpt,
    brier,
    cost_to_match,
    ece,
    lambda_grid,
    ndch,
    ndch_value,
    router_sweep,
    routing_figures,
)

# Two models, four prompts. A costs 1 per prompt, B costs 3.
#   prompt:   1  2  3  4
#   q_A:      1  0  0  1      -> A = (cost 1, quality 0.50)
#   q_B:      1  1  1  0      -> B = (cost 3, quality 0.75) = best single model, c_max = 3
# Zero hull A->B:           AIQ = ∫_1^3 (0.5..0.75) / 3            = 1.25 / 3
# Oracle picks A,B,B,A:     point (2, 1.0); hull A->(2,1)->flat     = (0.75 + 1) / 3 = 1.75 / 3
QUALITY = np.array([[1, 1], [0, 1], [0, 1], [1, 0]], dtype=float)
COST = np.array([[1, 3]] * 4, dtype=float)
NAMES = ["A", "B"]
# Router R: d = q̂_B − q̂_A = [-0.1, 0.7, 0.1, 0.1]; B is picked where d > 2λ.
#   λ = 0:          B on 2,3,4 -> (2.5, 0.75);  0.05 < λ < 0.35: B on 2 -> (1.5, 0.75);  else all A -> (1, 0.5)
#   hull (1,.5)->(1.5,.75)->flat: AIQ = (0.5 * 0.625 + 1.5 * 0.75) / 3 = 1.4375 / 3
#   capture = (1.4375 - 1.25) / (1.75 - 1.25) = 0.375;  c2m = 1.5 / 3 = 0.5;  gain at cost 3 = 0
Q_HAT_R = np.array([[0.9, 0.8], [0.2, 0.9], [0.6, 0.7], [0.6, 0.7]])


def test_hand_computed_aiq_capture_c2m():
    fig = routing_figures(QUALITY, COST, COST, {"R": Q_HAT_R, "perfect": QUALITY,
                                                "prior": np.tile([0.5, 0.75], (4, 1))},
                          NAMES, n_bootstrap=0)
    zero, oracle, r = fig.routers["zero"], fig.routers["oracle"], fig.routers["R"]
    assert fig.c_max == 3 and fig.best_model.name == "B" and fig.best_model.quality == 0.75
    assert zero.aiq == pytest.approx(1.25 / 3)
    assert oracle.aiq == pytest.approx(1.75 / 3)
    assert r.aiq == pytest.approx(1.4375 / 3)
    assert r.capture == pytest.approx(0.375)
    assert r.c2m == pytest.approx(0.5)
    assert r.gain_at_best_cost == pytest.approx(0.0)
    assert zero.c2m == pytest.approx(1.0) and zero.capture == 0.0
    assert oracle.c2m == pytest.approx(0.5) and oracle.capture == 1.0
    assert oracle.gain_at_best_cost == pytest.approx(0.25)
    # a router that knows the labels reaches the oracle; a prompt-blind one the zero router
    assert fig.routers["perfect"].capture == pytest.approx(1.0)
    assert fig.routers["prior"].capture == pytest.approx(0.0)
    assert fig.routers["prior"].c2m == pytest.approx(1.0)


def test_hand_computed_brier_ece_apgr():
    # Brier: squared errors A .01 .04 .36 .16, B .04 .01 .09 .49 -> 1.2 / 8
    assert brier(Q_HAT_R, QUALITY) == pytest.approx(0.15)
    # ECE (15 bins): bins {0.9,0.9|1,1}=.2 {0.2|0}=.2 {0.6,0.6|0,1}=.2 {0.8|1}=.2 {0.7,0.7|1,0}=.4 -> 1.2 / 8
    assert ece(Q_HAT_R, QUALITY) == pytest.approx(0.15)
    # APGR: order p2, {p3,p4} (tied: linear), p1; gains 1, (1-1)/2 each, 0; gap 0.25 -> PGR 0,1,1,1,1
    score = Q_HAT_R[:, 1] - Q_HAT_R[:, 0]
    apgr, cpt = apgr_cpt(score, QUALITY[:, 1], QUALITY[:, 0])
    assert apgr == pytest.approx(0.875)
    assert cpt == pytest.approx(0.125)
    fig = routing_figures(QUALITY, COST, COST, {"R": Q_HAT_R}, NAMES, n_bootstrap=0)
    assert fig.strong_weak == ("B", "A")
    assert fig.routers["R"].apgr == pytest.approx(0.875)
    assert fig.routers["zero"].apgr == pytest.approx(0.5)  # random routing recovers half on average
    assert fig.routers["oracle"].apgr == pytest.approx(1.375)  # PGR 0,1,2,2,1: beats the strong model


def test_brier_and_ece_ignore_missing_labels():
    q = np.array([[1.0, np.nan], [0.0, 1.0]])
    p = np.array([[0.5, 0.123], [0.5, 1.0]])
    assert brier(p, q) == pytest.approx((0.25 + 0.25 + 0.0) / 3)
    assert ece(np.full((2, 2), 0.5), np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(0.0)


def test_ndch_is_monotone_concave_and_above_every_point():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c, q = rng.uniform(0, 1, 30), rng.uniform(0, 1, 30)
        hc, hq = ndch(c, q)
        assert np.all(np.diff(hc) > 0) and np.all(np.diff(hq) > 0)
        slopes = np.diff(hq) / np.diff(hc)
        assert np.all(np.diff(slopes) < 1e-12)  # concave
        # no point lies above the hull at or right of its own cost
        assert np.all(ndch_value((hc, hq), c) >= q - 1e-12)


def test_ndch_value_zero_left_flat_right_and_aiq_edges():
    hull = ndch([2.0, 4.0], [0.5, 0.7])
    assert ndch_value(hull, 1.0) == 0.0 and ndch_value(hull, 3.0) == pytest.approx(0.6)
    assert ndch_value(hull, 10.0) == pytest.approx(0.7)
    assert aiq(hull, 4.0) == pytest.approx((2 * 0.6) / 4)
    assert aiq(hull, 8.0) == pytest.approx((2 * 0.6 + 4 * 0.7) / 8)
    assert aiq(hull, 1.0) == 0.0  # router's cheapest point is beyond c_max
    assert aiq(ndch([0.0], [0.4]), 0.0) == pytest.approx(0.4)  # all-free limit


def test_cost_to_match_never_is_infinite():
    hull = ndch([1.0, 2.0], [0.3, 0.6])
    assert math.isinf(cost_to_match(hull, best_cost=2.0, best_quality=0.7))
    assert cost_to_match(hull, best_cost=2.0, best_quality=0.45) == pytest.approx(0.75)


def test_degenerate_equal_costs_give_no_silent_nan():
    # every model costs the same and the labels make the oracle equal to the best model
    quality = np.array([[1.0, 0.0], [1.0, 1.0]])
    cost = np.ones((2, 2))
    fig = routing_figures(quality, cost, cost, {"r": np.full((2, 2), 0.5)}, ["x", "y"], n_bootstrap=20)
    assert fig.routers["r"].capture is None
    assert any("headroom" in note for note in fig.notes)
    assert fig.routers["r"].aiq == pytest.approx(1.0)
    assert fig.routers["r"].capture_bootstrap.n == 0


def test_sweep_masks_missing_results_and_drops_empty_prompts():
    quality = np.array([[np.nan, 0.0], [np.nan, np.nan], [1.0, 1.0]])
    cost = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    q_hat = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]])  # would pick the missing model on prompt 0
    curve = router_sweep(q_hat, cost, quality, cost)
    assert curve.picks.shape[1] == 2  # the prompt with no result is dropped
    assert np.all(curve.picks[:, 0] == 1)  # model 0 has no result on prompt 0
    assert curve.lambdas[0] == 0 and np.isinf(curve.lambdas[-1])
    assert curve.costs[-1] == pytest.approx(1.5)  # cheapest available on each prompt


def test_lambda_grid_spans_cost_scale_and_sweep_ends_at_cheapest():
    rng = np.random.default_rng(1)
    c_hat = rng.uniform(1e-6, 1e-3, (100, 5))
    grid = lambda_grid(c_hat, np.ones_like(c_hat, bool), 400)
    assert grid.size == 400 and grid[0] == 0 and np.isinf(grid[-1]) and np.all(np.diff(grid) > 0)
    quality = rng.integers(0, 2, (100, 5)).astype(float)
    curve = router_sweep(rng.uniform(0, 1, (100, 5)), c_hat, quality, c_hat)
    assert np.all(curve.picks[-1] == np.argmin(c_hat, axis=1))


def test_sweep_is_fast_at_full_scale():
    rng = np.random.default_rng(2)
    n, m = 12_000, 25
    q_hat, c_hat = rng.uniform(0, 1, (n, m)), rng.uniform(1e-6, 1e-3, (n, m))
    quality = np.where(rng.uniform(size=(n, m)) < 0.1, np.nan, rng.integers(0, 2, (n, m)))
    start = time.perf_counter()
    curve = router_sweep(q_hat, c_hat, quality, c_hat)
    assert time.perf_counter() - start < 10.0  # ~1 s on 2 CPU cores; generous for a busy CI machine
    assert curve.costs.shape == (400,)


def test_paired_bootstrap_intervals_and_differences():
    rng = np.random.default_rng(3)
    n = 300
    quality = rng.integers(0, 2, (n, 3)).astype(float)
    cost = np.tile([1.0, 2.0, 4.0], (n, 1)) * rng.uniform(0.5, 1.5, (n, 1))
    good = np.clip(quality + rng.normal(0, 0.3, quality.shape), 0, 1)
    prior = np.tile(quality.mean(0), (n, 1))
    fig = routing_figures(quality, cost, cost, {"good": good, "prior": prior}, ["a", "b", "c"],
                          reference="good", n_bootstrap=100, seed=0)
    ci = fig.routers["good"].capture_bootstrap
    assert ci.n == 100 and ci.lo <= fig.routers["good"].capture <= ci.hi and ci.std > 0
    diff = fig.routers["prior"].capture_diff_bootstrap
    assert diff.lo > 0  # the informed router clearly beats the prior on the same resamples
    assert fig.routers["good"].capture_diff_bootstrap is None
    again = routing_figures(quality, cost, cost, {"good": good, "prior": prior}, ["a", "b", "c"],
                            reference="good", n_bootstrap=100, seed=0)
    assert again.routers["prior"].capture_diff_bootstrap == diff  # seeded: reproducible
    fig.model_dump_json()  # JSON-serialisable


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="shapes"):
        routing_figures(QUALITY, COST, COST[:2], {"R": Q_HAT_R}, NAMES, n_bootstrap=0)
    with pytest.raises(ValueError, match="reference"):
        routing_figures(QUALITY, COST, COST, {"R": Q_HAT_R}, NAMES, reference="x", n_bootstrap=0)
