"""Per-request selection: enumeration vs ILP agreement, exclusion reasons, fallbacks, bad input."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pickwise.registry import ModelSpec, estimate_cost_usd
from pickwise.selector.costs import request_candidates
from pickwise.selector.errors import InfeasibleSelection, SelectorInputError
from pickwise.selector.request import select_models
from pickwise.selector.types import Candidate, SelectionConstraints
from tests.registry_samples import model


def cand(name, q, cost, lat=100.0, **kw):
    return Candidate(name=name, quality=q, cost_usd=cost, latency_ms=lat, **kw)


POOL = [
    cand("cheap", 0.5, 0.001, 200),
    cand("mid", 0.8, 0.01, 800, aliases=["middle"]),
    cand("best", 0.95, 0.05, 3000),
    cand("small-ctx", 0.9, 0.002, 100, fits_context=False),
    cand("off", 0.99, 0.0001, 50, enabled=False),
]


def brute_force(cands, cons):
    """Best objective over every admissible set of 1..k models (None if there is none)."""
    best = None
    for size in range(1, cons.max_models + 1):
        for combo in itertools.combinations(cands, size):
            quality = 1 - np.prod([1 - c.quality for c in combo])
            cost = sum(c.cost_usd for c in combo)
            if cons.min_quality is not None and quality < cons.min_quality - 1e-12:
                continue
            if cons.max_cost_usd is not None and cost > cons.max_cost_usd + 1e-12:
                continue
            value = {"min_cost": -cost, "max_quality": quality,
                     "balanced": (cons.willingness_to_pay or 0) * quality - cost}[cons.objective]
            best = value if best is None else max(best, value)
    return best


@st.composite
def requests(draw):
    n = draw(st.integers(1, 7))
    grid = st.integers(0, 100)
    cands = [cand(f"m{i}", draw(grid) / 100, draw(grid) / 1000) for i in range(n)]
    objective = draw(st.sampled_from(["min_cost", "max_quality", "balanced"]))
    cons = SelectionConstraints(
        objective=objective,
        max_models=draw(st.integers(1, 3)),
        min_quality=draw(st.none() | st.integers(0, 100).map(lambda v: v / 100)),
        max_cost_usd=draw(st.none() | st.integers(0, 150).map(lambda v: v / 1000)),
        willingness_to_pay=draw(st.integers(0, 50).map(lambda v: v / 100)) if objective == "balanced" else None,
    )
    return cands, cons


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_enumeration_and_ilp_agree_with_brute_force(req):
    cands, cons = req
    expected = brute_force(cands, cons)
    for method in ("auto", "ilp"):
        if expected is None:
            with pytest.raises(InfeasibleSelection):
                select_models(cands, cons, method=method)
            continue
        d = select_models(cands, cons, method=method)
        sign = -1 if cons.objective == "min_cost" else 1
        assert sign * d.objective_value == pytest.approx(expected, abs=1e-9), method
        assert 1 <= len(d.chosen) <= cons.max_models
        if cons.min_quality is not None:
            assert d.quality >= cons.min_quality - 1e-12
        if cons.max_cost_usd is not None:
            assert d.cost_usd <= cons.max_cost_usd + 1e-12


def test_min_cost_respects_floor_and_reports_every_candidate():
    d = select_models(POOL, SelectionConstraints(min_quality=0.7))
    assert d.chosen == ["mid"] and d.method == "scan"
    reasons = {c.name: c.excluded_by for c in d.candidates}
    assert reasons == {
        "cheap": ["quality floor"], "mid": [], "best": [],
        "small-ctx": ["context window"], "off": ["disabled"],
    }
    assert [c.name for c in d.candidates if c.chosen] == ["mid"]


def test_lists_caps_and_objectives():
    cons = SelectionConstraints(objective="max_quality", exclude=["middle"], max_latency_ms=1000)
    d = select_models(POOL, cons)
    assert d.chosen == ["cheap"]
    reasons = {c.name: c.excluded_by for c in d.candidates}
    assert reasons["mid"] == ["deny-list"] and reasons["best"] == ["latency cap"]
    d = select_models(POOL, SelectionConstraints(objective="max_quality", models=["cheap", "best"], max_cost_usd=0.01))
    assert d.chosen == ["cheap"]
    assert {c.name: c.excluded_by for c in d.candidates}["best"] == ["cost cap"]
    assert {c.name: c.excluded_by for c in d.candidates}["mid"] == ["not in allow-list"]
    # balanced: +0.15 quality for +0.04 USD is worth it at 1 USD per unit of quality (break-even 0.27), not at 0.1
    assert select_models(POOL, SelectionConstraints(objective="balanced", willingness_to_pay=1,
                                                    models=["mid", "best"])).chosen == ["best"]
    assert select_models(POOL, SelectionConstraints(objective="balanced", willingness_to_pay=0.1,
                                                    models=["mid", "best"])).chosen == ["mid"]


def test_parallel_set_reaches_a_floor_no_single_model_can():
    cons = SelectionConstraints(min_quality=0.98, max_models=2)  # cheap+best reaches only 0.975
    d = select_models(POOL, cons)
    assert d.chosen == ["mid", "best"] and d.method == "enumeration"
    assert d.quality == pytest.approx(1 - 0.2 * 0.05)
    assert d.cost_usd == pytest.approx(0.06) and d.latency_ms == 3000


def test_infeasible_request_names_blocking_constraints():
    with pytest.raises(InfeasibleSelection) as err:
        select_models(POOL, SelectionConstraints(min_quality=0.99, max_latency_ms=1000))
    assert err.value.blocking == {
        "cheap": ["quality floor"], "mid": ["quality floor"], "best": ["latency cap", "quality floor"],
        "small-ctx": ["context window", "quality floor"], "off": ["disabled"],
    }
    assert "best: latency cap, quality floor" in str(err.value)
    with pytest.raises(InfeasibleSelection) as err:  # sets: floor reachable only above the cost cap
        select_models(POOL, SelectionConstraints(min_quality=0.98, max_models=2, max_cost_usd=0.05))
    assert err.value.blocking["cheap"] == ["quality floor"]
    assert err.value.blocking["mid"] == ["cost cap"]


def test_fallbacks_respect_hard_constraints_only():
    cons = dict(min_quality=0.99, max_latency_ms=1000)
    d = select_models(POOL, SelectionConstraints(**cons, on_infeasible="cheapest"))
    assert d.chosen == ["cheap"] and d.fallback == "cheapest" and d.violates == ["quality floor"]
    d = select_models(POOL, SelectionConstraints(**cons, on_infeasible="best_quality"))
    assert d.chosen == ["best"] and d.violates == ["latency cap", "quality floor"]
    with pytest.raises(InfeasibleSelection, match="hard constraints"):
        select_models(POOL, SelectionConstraints(models=["small-ctx", "off"], on_infeasible="cheapest"))


def test_best_quality_fallback_returns_the_best_set_up_to_max_models():
    """With max_models = k the fallback is the best-quality set of up to k allowed models (it used to
    return one model, below what `objective: max_quality` gives the same request when feasible)."""
    cons = dict(min_quality=0.999, max_latency_ms=1000, on_infeasible="best_quality")
    d = select_models(POOL, SelectionConstraints(**cons, max_models=2))
    assert d.chosen == ["best", "mid"] and d.fallback == "best_quality"
    assert d.quality == pytest.approx(1 - 0.05 * 0.2)
    assert d.violates == ["latency cap", "quality floor"]
    d = select_models(POOL, SelectionConstraints(**cons, max_models=3, max_cost_usd=0.055))
    assert d.chosen == ["best", "mid", "cheap"]  # each within the cost cap, their sum 0.061 is not
    assert d.violates == ["latency cap", "cost cap", "quality floor"]
    assert select_models(POOL, SelectionConstraints(**cons)).chosen == ["best"]  # k = 1: as before
    zero = [cand("a", 0.6, 0.01), cand("b", 0.0, 0.001)]  # a member that cannot answer adds nothing
    assert select_models(zero, SelectionConstraints(min_quality=0.9, max_models=2,
                                                     on_infeasible="best_quality")).chosen == ["a"]


def test_low_confidence_is_carried_to_the_decision():
    pool = [cand("a", 0.9, 0.01, low_confidence="population prior"), cand("b", 0.2, 0.001)]
    d = select_models(pool, SelectionConstraints(min_quality=0.5, allow_low_confidence=True))
    assert d.low_confidence == {"a": "population prior"}


def test_a_low_confidence_quality_cannot_meet_a_floor_by_itself_unless_allowed():
    pool = [cand("guess", 0.95, 0.001, low_confidence="no results on prompts like this"), cand("known", 0.8, 0.01),
            cand("weak", 0.3, 0.0001)]
    d = select_models(pool, SelectionConstraints(min_quality=0.7))
    assert d.chosen == ["known"]  # the cheaper, higher guess does not count
    assert next(c for c in d.candidates if c.name == "guess").excluded_by == ["low confidence"]
    assert select_models(pool, SelectionConstraints(min_quality=0.7, allow_low_confidence=True)).chosen == ["guess"]
    with pytest.raises(InfeasibleSelection) as info:
        select_models(pool, SelectionConstraints(min_quality=0.9))
    assert info.value.blocking["guess"] == ["low confidence"] and info.value.blocking["known"] == ["quality floor"]
    assert select_models(pool, SelectionConstraints()).chosen == ["weak"]  # no floor: cheapest, as before
    # in a set it may join, but the floor must be met by the members with evidence
    sets = SelectionConstraints(min_quality=0.85, max_models=2, objective="min_cost")
    with pytest.raises(InfeasibleSelection):
        select_models([pool[0], pool[2]], sets)
    assert select_models(pool, SelectionConstraints(min_quality=0.75, max_models=2)).chosen == ["known"]


def test_correlated_set_quality_is_lower_and_decides_sets():
    pool = [cand("a", 0.6, 0.01), cand("b", 0.6, 0.01), cand("c", 0.95, 0.5)]
    cons = SelectionConstraints(min_quality=0.8, max_models=2)
    independent = select_models(pool, cons)  # 1 - 0.4 * 0.4 = 0.84 meets the floor for 0.02
    assert sorted(independent.chosen) == ["a", "b"] and independent.quality == pytest.approx(0.84)
    correlated = select_models(pool, cons, set_rho=0.5)  # 1 - (0.5 * 0.4 + 0.5 * 0.16) = 0.72 does not
    assert correlated.chosen == ["c"]
    assert select_models(pool, SelectionConstraints(objective="max_quality", max_models=2, models=["a", "b"]),
                         set_rho=0.5).quality == pytest.approx(0.72)


def test_bad_input_is_rejected_clearly():
    with pytest.raises(ValidationError, match="quality"):
        cand("x", float("nan"), 0.1)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        cand("x", 1.2, 0.1)
    with pytest.raises(ValidationError, match="willingness_to_pay"):
        SelectionConstraints(objective="balanced")
    with pytest.raises(ValidationError):
        SelectionConstraints(max_models=4)
    with pytest.raises(SelectorInputError, match="unknown model.*nope"):
        select_models(POOL, SelectionConstraints(models=["nope"]))
    with pytest.raises(SelectorInputError, match="duplicate"):
        select_models([cand("a", 0.5, 0.1), cand("a", 0.6, 0.1)], SelectionConstraints())
    with pytest.raises(InfeasibleSelection, match="no candidate"):
        select_models([], SelectionConstraints())


def test_large_pool_uses_the_ilp_and_matches_enumeration():
    rng = np.random.default_rng(7)
    pool = [cand(f"m{i}", float(rng.random()), float(rng.random() / 100)) for i in range(70)]
    cons = SelectionConstraints(min_quality=0.97, max_models=2, objective="min_cost")
    d = select_models(pool, cons)
    assert d.method == "ilp"
    assert d.cost_usd == pytest.approx(select_models(pool, cons, method="enumeration").cost_usd)


def test_a_base_model_on_an_open_ended_prompt_is_left_out_unless_allowed():
    pool = [cand("base", 0.9, 0.001, open_ended_base=True), cand("chat", 0.7, 0.01), cand("dear", 0.8, 0.05)]
    d = select_models(pool, SelectionConstraints(objective="max_quality"))
    assert d.chosen == ["dear"]
    assert next(c for c in d.candidates if c.name == "base").excluded_by == ["base model, open-ended prompt"]
    assert select_models(pool, SelectionConstraints(objective="max_quality", allow_base_models=True)).chosen == ["base"]
    # a hard rule: a fallback does not break it either
    only = [pool[0], cand("weak", 0.1, 0.01)]
    fallback = select_models(only, SelectionConstraints(min_quality=0.5, on_infeasible="best_quality"))
    assert fallback.chosen == ["weak"] and fallback.fallback == "best_quality"
    with pytest.raises(InfeasibleSelection) as info:
        select_models([pool[0]], SelectionConstraints(on_infeasible="cheapest"))
    assert info.value.blocking == {"base": ["base model, open-ended prompt"]}


def test_an_output_cap_bounds_the_estimates_and_reserves_its_whole_length():
    small = ModelSpec.model_validate(model("small", context_window=4096, max_output_tokens=4096))
    large = ModelSpec.model_validate(model("large", context_window=128_000, max_output_tokens=16_000))
    capped = request_candidates([small, large], 100, [0.5, 0.5], output_tokens=[300.0, 300.0], output_cap=20)
    assert [c.output_tokens for c in capped] == [20, 20]  # min(estimate, cap), as expected_output_tokens=20 gives
    assert capped[0].cost_usd == request_candidates([small], 100, [0.5], output_tokens=20)[0].cost_usd
    assert capped[0].cost_usd == pytest.approx(estimate_cost_usd(small, 100, 20))
    roomy = request_candidates([small, large], 100, [0.5, 0.5], output_tokens=[300.0, 300.0], output_cap=10_000)
    assert [c.output_tokens for c in roomy] == [300, 300]  # the cap binds only above the estimate ...
    assert [c.fits_context for c in roomy] == [False, True]  # ... but the window must take all of it
    [over] = request_candidates([large], 100, [0.5], output_cap=16_001)  # the window takes it, max_output_tokens not
    assert (over.fits_context, over.fits_output) == (True, False)
    with pytest.raises(InfeasibleSelection) as info:  # a hard limit: no fallback breaks it
        select_models([over], SelectionConstraints(on_infeasible="cheapest"))
    assert info.value.blocking == {"large": ["max output tokens"]}
    decision = select_models(roomy, SelectionConstraints())
    assert decision.chosen == ["large"]
    assert next(c for c in decision.candidates if c.name == "small").excluded_by == ["context window", "max output tokens"]


def test_several_answers_pay_each_ones_output_and_the_prompt_once():
    small = ModelSpec.model_validate(model("small", context_window=4096, max_output_tokens=4096))
    [one] = request_candidates([small], 100, [0.5], output_tokens=1000, output_cap=3000)
    [three] = request_candidates([small], 100, [0.5], output_tokens=1000, output_cap=3000, answers=3)
    assert three.cost_usd == pytest.approx(estimate_cost_usd(small, 100, 3000)) and three.cost_usd > one.cost_usd
    assert (three.latency_ms, three.fits_context, three.output_tokens) == (one.latency_ms, True, 1000)
    with pytest.raises(ValueError, match="answers must be >= 1"):
        request_candidates([small], 100, [0.5], answers=0)
