"""The one-scale layer (predictor.scale): joint ability scale, support flags, set calibration. No encoder."""
from __future__ import annotations

import numpy as np

from pickwise.predictor.scale import (
    OneScale,
    dominance_pairs,
    fit_one_scale,
    fit_set_rho,
    set_quality,
    sigmoid,
)

TASKS = ["t1/easy", "t1/hard", "t2/x"]


def two_tables(seed: int = 0):
    """Table 1 (easy tasks) has models A, S; table 2 (hard) has S, B, C. S is shared.

    True abilities: A 2.0 > S 1.0 > B 0.0 > C -0.5; table 2 is much harder, so B's raw mean
    on its own table is far below A's on table 1, and only the shared model links them."""
    rng = np.random.default_rng(seed)
    ability = np.array([2.0, 1.0, 0.0, -0.5])  # A, S, B, C
    rows = []
    for t, (tasks, members, diff) in enumerate([(["t1/easy", "t1/hard"], [0, 1], [-1.0, 0.0]),
                                               (["t2/x"], [1, 2, 3], [1.5])]):
        for k, name in enumerate(tasks):
            n = 600
            q = np.full((n, 4), np.nan)
            p = sigmoid(ability[None, members] - diff[k])
            q[:, members] = (rng.random((n, len(members))) < p).astype(float)
            rows.append((q, np.full(n, name), np.full(n, t)))
    labels = np.vstack([r[0] for r in rows])
    return labels, np.concatenate([r[1] for r in rows]), np.concatenate([r[2] for r in rows])


def fitted():
    labels, task, table = two_tables()
    tables = {"A": ["t1"], "S": ["t1", "t2"], "B": ["t2"], "C": ["t2"]}
    return fit_one_scale(["A", "S", "B", "C"], TASKS, tables, labels, task, table), labels, task, table


def test_dominance_pairs_are_direct_within_a_table_and_implied_across():
    labels, task, table = two_tables()
    direct, implied = dominance_pairs([(labels[table == t], task[table == t]) for t in (0, 1)])
    assert (0, 1) in direct and (1, 2) in direct  # A > S on t1, S > B on t2
    assert (0, 2) in implied and (0, 3) in implied  # A > B, A > C only through S
    assert not {(b, a) for a, b in direct} & direct


def test_scale_keeps_a_dominance_across_tables_on_prompts_of_other_kinds():
    scale, *_ = fitted()
    assert scale.ability[0] > scale.ability[1] > scale.ability[2] > scale.ability[3]
    # a table-2 prompt: A has no support there, S/B/C do; A must still come out on top
    tasks = np.array([[0.0, 0.0, 1.0]])
    trained = np.array([[-3.0, -0.6, -1.4, -2.0]])  # A's trained logit extrapolates badly (table-1 bias)
    out = scale.combine(trained, tasks, np.zeros((1, 0)))
    assert out["support"][0, 0] == 0 and out["support"][0, 1] > 0.9
    assert out["logits"][0, 0] > out["logits"][0, 1] > out["logits"][0, 2] > out["logits"][0, 3]


def test_an_unsupported_model_task_pair_is_flagged_with_a_reason():
    scale, *_ = fitted()
    tasks = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    out = scale.combine(np.zeros((2, 4)), tasks, np.zeros((2, 0)))
    assert out["support"][0, 0] < 0.5 <= out["support"][1, 0]  # A: unsupported on t2, supported on t1
    assert out["rows"][1, 0] == 600 and out["rows"][0, 0] == 0
    reason = scale.reason(0, out["support"][0, 0], 0.0, "t2/x")
    assert "A" in reason and "0%" in reason and "t1" in reason


def test_scale_round_trips_through_json(tmp_path):
    scale, *_ = fitted()
    scale.save(tmp_path)
    again = OneScale.load(tmp_path)
    np.testing.assert_allclose(again.ability, scale.ability)
    assert again.model_names == scale.model_names and again.base.dtype == bool


def test_set_calibration_recovers_the_failure_correlation():
    rng = np.random.default_rng(1)
    rho, n = 0.4, 40000
    p = rng.uniform(0.3, 0.9, size=(n, 2))
    common = rng.random(n) < rho  # common-mode: one shared draw decides both failures
    shared = rng.random(n)[:, None]
    draw = np.where(common[:, None], shared, rng.random((n, 2)))
    success = draw >= 1 - p
    any_ok = success.any(1).astype(float)
    fitted_rho = fit_set_rho([p], [any_ok])
    assert abs(fitted_rho - rho) < 0.05
    # equal p: rho is the correlation of the failure indicators
    q = np.full((n, 2), 0.5)
    fail = np.where(common[:, None], shared, rng.random((n, 2))) < q
    assert abs(np.corrcoef(fail.T)[0, 1] - rho) < 0.03
    assert set_quality(np.array([[0.5, 0.5]]), 0.0)[0] == 0.75 and set_quality(np.array([[0.5, 0.5]]), 1.0)[0] == 0.5
