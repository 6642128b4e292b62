"""Universe constructor against brute force over every pool."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pickwise.selector.errors import PlanInfeasible, SelectorInputError
from pickwise.selector.universe import build_universe


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**32 - 1), st.data())
def test_ilp_is_optimal_and_greedy_within_its_bound(n, m, seed, data):
    q = np.random.default_rng(seed).random((n, m))
    k = data.draw(st.integers(1, m))
    best = max(q[:, list(pool)].max(axis=1).mean() for pool in itertools.combinations(range(m), k))
    ilp = build_universe(q, max_models=k, solver="ilp")
    assert ilp.mean_best_quality == pytest.approx(best, abs=1e-9)
    assert len(ilp.models) <= k and ilp.bound >= best - 1e-9
    greedy = build_universe(q, max_models=k, solver="greedy")
    assert greedy.mean_best_quality >= (1 - 1 / np.e) * best - 1e-12
    assert greedy.bound >= best - 1e-9 and greedy.gap >= 0


def test_mean_cost_budget_routes_within_the_pool():
    q = np.array([[0.9, 0.6, 0.2], [0.8, 0.7, 0.3]])
    c = np.array([[1.0, 0.2, 0.1], [1.0, 0.2, 0.1]])
    plan = build_universe(q, max_models=2, cost=c, max_mean_cost=0.6, model_names=["big", "mid", "small"])
    # best affordable: one prompt on big, one on mid (mean cost 0.6): quality (0.9 + 0.7) / 2
    assert sorted(plan.models) == ["big", "mid"]
    assert plan.mean_best_quality == pytest.approx(0.8) and plan.mean_cost == pytest.approx(0.6)
    with pytest.raises(PlanInfeasible, match="below the cheapest"):
        build_universe(q, max_models=2, cost=c, max_mean_cost=0.05)


def test_total_price_and_allowed_mask():
    q = np.array([[0.9, 0.6], [0.9, 0.6]])
    plan = build_universe(q, model_price=[10.0, 1.0], max_total_price=5.0)
    assert plan.models == ["model_1"]
    allowed = np.array([[False, True], [True, True]])
    plan = build_universe(q, max_models=1, allowed=allowed)
    assert plan.mean_best_quality == pytest.approx(0.6)  # model_0 serves only one prompt: 0.45 < 0.6
    nothing = np.array([[True, True], [False, False]])
    with pytest.raises(PlanInfeasible, match="^prompt q-b has no allowed model$") as err:
        build_universe(q, max_models=1, allowed=nothing, prompt_ids=["q-a", "q-b"])
    assert err.value.rows == [1]


def test_bad_input():
    with pytest.raises(SelectorInputError, match="give max_models"):
        build_universe(np.ones((2, 2)) / 2)
    with pytest.raises(SelectorInputError, match="nan"):
        build_universe(np.array([[np.nan, 0.5]]), max_models=1)
    with pytest.raises(SelectorInputError, match="at least one prompt"):
        build_universe(np.zeros((0, 2)), max_models=1)
    with pytest.raises(SelectorInputError, match="greedy"):
        build_universe(np.ones((2, 2)) / 2, max_models=1, cost=np.ones((2, 2)), max_mean_cost=1, solver="greedy")


def test_a_mean_cost_budget_bound_from_split_prompts_is_within_gap_not_optimal():
    """The MILP may route half a prompt to spend the budget exactly (bound 0.75); whole prompts reach
    0.5. It used to print status optimal beside that gap."""
    q = c = np.array([[1.0, 0.0], [1.0, 0.0]])
    plan = build_universe(q, max_models=2, cost=c, max_mean_cost=0.75, solver="ilp")
    assert plan.mean_best_quality == pytest.approx(0.5) and plan.bound == pytest.approx(0.75, abs=1e-5)
    assert plan.gap == pytest.approx((plan.bound - plan.mean_best_quality) / plan.bound)
    assert plan.status == "within_gap"


@pytest.mark.parametrize("solver", ["greedy", "ilp"])
def test_a_pool_holds_only_models_that_serve_a_prompt(solver):
    """model_0 is best on every prompt: a second member would serve a share of 0, adding nothing."""
    q = np.array([[0.9, 0.5, 0.4], [0.8, 0.3, 0.2]])
    plan = build_universe(q, max_models=2, solver=solver)
    assert plan.models == ["model_0"] and plan.share == {"model_0": 1.0}
    assert plan.mean_best_quality == pytest.approx(0.85) and plan.status != "time_limit"


def test_a_time_limit_with_no_pool_found_says_what_to_change():
    from pickwise.selector.errors import SolverTimedOut

    rng = np.random.default_rng(0)
    q, c = rng.random((400, 30)), rng.random((400, 30)) * 1e-3
    with pytest.raises(SolverTimedOut, match=r"within its time limit \(1e-06 s\).*--time-limit") as info:
        build_universe(q, max_models=3, cost=c, max_mean_cost=3e-4, time_limit=1e-6)
    assert info.value.time_limit == 1e-6


def test_the_cheapest_mean_cost_named_is_a_limit_that_plans():
    """`below the cheapest possible mean cost per prompt, 1.97717e-05 USD` for 1.977174e-05: passing
    the figure back was refused again."""
    q = np.array([[0.9, 0.6]])
    c = np.array([[1.0, 1.977174e-05]])
    with pytest.raises(PlanInfeasible, match="below the cheapest") as refused:
        build_universe(q, max_models=2, cost=c, max_mean_cost=0.0)
    named = float(str(refused.value).split(", ")[-1].split()[0])
    assert build_universe(q, max_models=2, cost=c, max_mean_cost=named).models == ["model_1"]
