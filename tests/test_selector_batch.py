"""Batch planning against brute force on small random instances, plus degenerate inputs."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pickwise.selector.batch import plan_batch
from pickwise.selector.errors import BudgetInfeasible, PlanInfeasible, SelectorInputError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def brute_force(q, c, *, budget=math.inf, target=None, allowed=None, capacity=None):
    """Every assignment; returns (best objective, cheapest total cost of any allowed assignment)."""
    n, m = q.shape
    allowed = np.ones((n, m), bool) if allowed is None else allowed
    best, cheapest = None, math.inf
    for choice in itertools.product(range(m), repeat=n):
        rows = np.arange(n)
        if not allowed[rows, choice].all():
            continue
        if capacity is not None and (np.bincount(choice, minlength=m) > capacity).any():
            continue
        cost, qual = c[rows, choice].sum(), q[rows, choice].sum()
        if target is None:
            cheapest = min(cheapest, cost)
            if cost <= budget and (best is None or qual > best):
                best = qual
        elif qual >= n * target - 1e-12:
            cheapest = min(cheapest, cost)
            if best is None or cost < best:
                best = cost
    return best, cheapest


@st.composite
def instances(draw, max_n=5, max_m=3):
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(1, max_m))
    grid = st.integers(0, 100)
    q = np.array(draw(st.lists(grid, min_size=n * m, max_size=n * m)), float).reshape(n, m) / 100
    c = np.array(draw(st.lists(grid, min_size=n * m, max_size=n * m)), float).reshape(n, m) / 1000
    frac = draw(st.floats(0.0, 1.2))
    return q, c, frac


@SETTINGS
@given(instances(), st.sampled_from(["exact", "lagrangian", "auto"]))
def test_max_quality_under_budget_matches_brute_force(inst, solver):
    q, c, frac = inst
    budget = frac * c.max(axis=1).sum()
    opt, cheapest = brute_force(q, c, budget=budget)
    if opt is None:
        with pytest.raises(BudgetInfeasible) as err:
            plan_batch(q, c, budget=budget, solver=solver)
        assert err.value.min_budget == pytest.approx(cheapest, abs=1e-12)
        return
    plan = plan_batch(q, c, budget=budget, solver=solver, gap_tolerance=0.0)
    assert plan.total_cost <= budget  # never exceeded, not even by rounding
    assert plan.quality_sum <= opt + 1e-9
    assert plan.bound >= opt - 1e-9  # the certificate is a true bound
    assert plan.quality_sum >= plan.bound * (1 - plan.gap) - 1e-9  # and the gap is what it says
    if solver != "lagrangian":
        assert plan.quality_sum == pytest.approx(opt, abs=1e-9)


@SETTINGS
@given(instances(), st.floats(0.0, 1.0), st.sampled_from(["exact", "lagrangian"]))
def test_min_cost_for_mean_quality_matches_brute_force(inst, target, solver):
    q, c, _ = inst
    opt, _ = brute_force(q, c, target=target)
    if opt is None:
        with pytest.raises(PlanInfeasible, match="out of reach"):
            plan_batch(q, c, min_avg_quality=target, solver=solver)
        return
    plan = plan_batch(q, c, min_avg_quality=target, solver=solver, gap_tolerance=0.0)
    assert plan.quality_sum >= q.shape[0] * target - 1e-9
    assert plan.total_cost >= opt - 1e-12
    assert plan.bound <= opt + 1e-12  # a lower bound on cost
    if solver == "exact":
        assert plan.total_cost == pytest.approx(opt, abs=1e-12)


@SETTINGS
@given(instances(), st.data())
def test_capacities_and_allow_lists_match_brute_force(inst, data):
    q, c, frac = inst
    n, m = q.shape
    capacity = np.array(data.draw(st.lists(st.integers(0, n), min_size=m, max_size=m)))
    allowed = np.array(data.draw(st.lists(st.booleans(), min_size=n * m, max_size=n * m))).reshape(n, m)
    budget = frac * c.max(axis=1).sum()
    opt, cheapest = brute_force(q, c, budget=budget, allowed=allowed, capacity=capacity)
    solver = data.draw(st.sampled_from(["exact", "lagrangian", "auto"]))
    try:
        plan = plan_batch(q, c, budget=budget, allowed=allowed, capacity=capacity, solver=solver, gap_tolerance=0.0)
    except BudgetInfeasible as exc:
        assert opt is None and cheapest < math.inf
        assert exc.min_budget == pytest.approx(cheapest, abs=1e-12)
        return
    except PlanInfeasible:
        assert cheapest == math.inf  # no assignment at all respects lists and capacities
        return
    choice = np.array(plan.assignment)
    assert allowed[np.arange(n), choice].all()
    assert (np.bincount(choice, minlength=m) <= capacity).all()
    assert plan.total_cost <= budget
    assert plan.bound >= opt - 1e-9
    if solver != "lagrangian":
        assert plan.quality_sum == pytest.approx(opt, abs=1e-9)


def test_pulp_solvers_agree_with_exact():
    rng = np.random.default_rng(3)
    q, c = rng.random((12, 4)), rng.random((12, 4)) / 100
    budget = 0.5 * c.sum(axis=1).mean() * 12 / 4 * 2
    exact = plan_batch(q, c, budget=budget, solver="exact", gap_tolerance=0.0)
    for solver in ("pulp-cbc", "pulp-highs"):
        plan = plan_batch(q, c, budget=budget, solver=solver, gap_tolerance=0.0)
        assert plan.quality_sum == pytest.approx(exact.quality_sum, abs=1e-7)
        assert plan.total_cost <= budget
        assert plan.solver == solver


def test_floors_and_latency_caps_restrict_options():
    q = np.array([[0.9, 0.5], [0.9, 0.5]])
    c = np.array([[1.0, 0.1], [1.0, 0.1]])
    plan = plan_batch(q, c, budget=10, min_quality=[0.0, 0.8], latency=[100.0, 10.0], max_latency_ms=[50.0, 500.0])
    assert plan.assignment == [1, 0]  # prompt 0: latency cap rules out model 0; prompt 1: floor rules out model 1
    with pytest.raises(PlanInfeasible) as err:
        plan_batch(q, c, budget=10, min_quality=0.95)
    assert err.value.reason == "no allowed model" and err.value.rows == [0, 1]
    assert str(err.value).endswith("allow-lists: 0, 1")  # positions, without ids
    with pytest.raises(PlanInfeasible, match=r"allow-lists: q-a, q-b$"):  # the caller's ids, what a user can find
        plan_batch(q, c, budget=10, min_quality=0.95, prompt_ids=["q-a", "q-b"])
    with pytest.raises(SelectorInputError, match="1 prompt ids for 2 prompts"):
        plan_batch(q, c, budget=10, prompt_ids=["q-a"])


def test_budget_and_quality_target_together():
    q = np.array([[0.9, 0.5], [0.9, 0.5]])
    c = np.array([[1.0, 0.1], [1.0, 0.1]])
    plan = plan_batch(q, c, min_avg_quality=0.7, budget=1.1)
    assert plan.total_cost == pytest.approx(1.1) and plan.objective == "min_cost"
    with pytest.raises(BudgetInfeasible) as err:
        plan_batch(q, c, min_avg_quality=0.7, budget=1.0)
    assert err.value.min_budget == pytest.approx(1.1)


def test_degenerate_inputs():
    empty = plan_batch(np.zeros((0, 3)), np.zeros((0, 3)), budget=1.0)
    assert empty.assignment == [] and empty.status == "empty" and empty.total_cost == 0
    one = plan_batch(np.array([[0.3], [0.4]]), np.array([[1.0], [2.0]]), budget=3.0)
    assert one.assignment == [0, 0] and one.gap == 0
    free = plan_batch(np.array([[0.3, 0.9]]), np.zeros((1, 2)), budget=0.0)
    assert free.assignment == [1]  # zero budget is fine when something is free
    with pytest.raises(BudgetInfeasible) as err:
        plan_batch(np.array([[0.3, 0.9]]), np.array([[0.5, 1.0]]), budget=0.0)
    assert err.value.min_budget == 0.5
    no_limit = plan_batch(np.array([[0.3, 0.9]]), np.array([[0.5, 1.0]]))
    assert no_limit.assignment == [1]


@pytest.mark.parametrize("bad, where", [(np.nan, "nan"), (1.5, "1.5"), (-0.1, "-0.1")])
def test_bad_qualities_are_rejected_with_their_position(bad, where):
    q = np.full((3, 2), 0.5)
    q[2, 1] = bad
    with pytest.raises(SelectorInputError, match=rf"{where}.*prompt 2, model b"):
        plan_batch(q, np.ones((3, 2)), budget=10, model_names=["a", "b"])
    with pytest.raises(SelectorInputError, match=rf"{where}.*prompt q-c, model b"):  # by id when given
        plan_batch(q, np.ones((3, 2)), budget=10, model_names=["a", "b"], prompt_ids=["q-a", "q-b", "q-c"])


def test_bad_shapes_and_parameters():
    with pytest.raises(SelectorInputError, match="shape"):
        plan_batch(np.ones((2, 2)) / 2, np.ones((2, 3)), budget=1)
    with pytest.raises(SelectorInputError, match=r"^budget must be a finite number >= 0, got -1$"):
        plan_batch(np.ones((2, 2)) / 2, np.ones((2, 2)), budget=-1)
    # a per-prompt floor names the prompt, in plain numbers (not "np.float64(2.0) at model 0")
    with pytest.raises(SelectorInputError, match=r"^min_quality has an invalid value 2 at prompt 0 \(each must be "
                                                 r"a finite number in \[0, 1\]\); 2 invalid"):
        plan_batch(np.ones((2, 2)) / 2, np.ones((2, 2)), budget=1, min_quality=2.0)
    with pytest.raises(SelectorInputError, match="unknown solver"):
        plan_batch(np.ones((2, 2)) / 2, np.ones((2, 2)), budget=1, solver="magic")
    with pytest.raises(SelectorInputError, match="capacity"):
        plan_batch(np.ones((2, 2)) / 2, np.ones((2, 2)), budget=9, capacity=[1])


def test_fast_path_certifies_a_tiny_gap_on_a_large_instance():
    rng = np.random.default_rng(0)
    n, m = 20000, 10
    skill = np.linspace(-1, 2, m)
    q = 1 / (1 + np.exp(-(skill[None, :] - rng.normal(0, 1, (n, 1)) + rng.normal(0, 0.3, (n, m)))))
    c = np.exp(np.linspace(0, np.log(100), m))[None, :] * rng.lognormal(0, 0.5, (n, 1)) * 1e-5
    budget = 0.4 * c[np.arange(n), q.argmax(axis=1)].sum()
    fast = plan_batch(q, c, budget=budget, solver="lagrangian")
    assert fast.gap < 1e-4 and fast.total_cost <= budget
    auto = plan_batch(q, c, budget=budget)
    assert auto.solver == "lagrangian"  # within tolerance, so no MILP
    exact = plan_batch(q, c, budget=budget, solver="exact", gap_tolerance=1e-7)
    assert exact.quality_sum >= fast.quality_sum - 1e-9
    assert exact.quality_sum <= fast.bound + 1e-9


def test_infeasible_capacities_say_their_numbers():
    """It used to say only 'model capacities cannot serve every prompt with an allowed model'."""
    q, c = np.full((5, 3), 0.5), np.ones((5, 3))
    with pytest.raises(PlanInfeasible, match=r"^model capacities total 3 for 5 prompts") as err:
        plan_batch(q, c, capacity=[1, 1, 1], model_names=["A", "B", "C"])
    assert err.value.reason == "capacity"
    allowed = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=bool)  # p0, p1: A only
    with pytest.raises(PlanInfeasible, match=r"^2 prompt\(s\) may go only to A=1 \(1 places\): p0, p1$") as err:
        plan_batch(q, c, capacity=[1, 5, 5], allowed=allowed, model_names=["A", "B", "C"],
                   prompt_ids=[f"p{i}" for i in range(5)])
    assert err.value.rows == [0, 1]


def test_a_time_limit_reached_without_a_plan_is_a_domain_error_not_a_traceback():
    """With capacities, --time-limit bounds the exact min-cost check too; HiGHS stopping there with no
    plan raised SolverFailed, a RuntimeError: a traceback from `pickwise plan`, a 500 from /v1/plan.
    (A machine fast enough to finish within the limit plans instead.)"""
    from pickwise.selector.errors import SolverTimedOut

    rng = np.random.default_rng(0)
    q, c = rng.random((2000, 40)), rng.random((2000, 40)) * 1e-3
    cap = np.full(40, 2000)
    cap[:2] = 200
    try:
        plan = plan_batch(q, c, budget=float(c.mean() * 2000), capacity=cap, solver="exact", time_limit=1e-4)
    except SolverTimedOut as exc:
        assert exc.time_limit == 1e-4 and "--time-limit" in str(exc) and "time_limit" in str(exc)
    else:
        assert plan.total_cost <= c.mean() * 2000
