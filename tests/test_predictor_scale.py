"""The one-scale layer (predictor.scale): joint ability scale, support flags, set calibration. No encoder."""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.predictor.scale import (
    BANK_FILE,
    OneScale,
    dominance_pairs,
    fit_bank_detector,
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


def bank_detector_scale(seed: int = 2, width: int = 32):
    """A scale whose detector reads s_nn against a bank: priced prompts sit in tight clusters (which
    no linear read of the embedding separates from prompts spread anywhere), open-ended ones anywhere."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, width))
    priced = lambda n: centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, width))  # noqa: E731
    spread = lambda n: rng.normal(size=(n, width))  # noqa: E731
    triple = lambda pooled: (rng.normal(size=(len(pooled), 2)), np.full((len(pooled), 3), 1 / 3), pooled)  # noqa: E731
    detector, bank = fit_bank_detector(priced(400), triple(spread(300)), triple(priced(300)),
                                       neg_groups=np.arange(300) % 3, k=10, c=1.0)
    scale, *_ = fitted()
    scale.detector, scale.bank = detector, bank
    return scale, priced, spread, triple


def test_the_detector_reads_similarity_to_the_bank_of_priced_prompts():
    scale, priced, spread, triple = bank_detector_scale()
    assert len(scale.detector["w"]) == 2 + 3 + 32 + 1 and scale.detector["w"][-1] < 0  # s_nn: nearer, less open
    assert np.mean(scale.open_ended(*triple(priced(100))) < 0.5) > 0.9
    assert np.mean(scale.open_ended(*triple(spread(100))) >= 0.5) > 0.9
    u, tasks, _ = triple(priced(1))
    with pytest.raises(ValueError, match="pooled"):
        scale.open_ended(u, tasks, None)
    # and the p_open it gives is what cuts support in the blend
    tasks = np.tile([[1.0, 0.0, 0.0]], (2, 1))
    out = scale.combine(np.zeros((2, 4)), tasks, np.zeros((2, 2)), np.vstack([priced(1), spread(1)]))
    assert out["open_ended"][0] < 0.5 <= out["open_ended"][1] and out["support"][0, 0] > out["support"][1, 0]


def test_the_bank_is_saved_and_loaded_with_the_scale(tmp_path):
    scale, priced, spread, triple = bank_detector_scale()
    scale.save(tmp_path)
    assert (tmp_path / BANK_FILE).stat().st_size < 400 * 32 * 2 + 200  # float16
    again = OneScale.load(tmp_path)
    assert again.bank.shape == scale.bank.shape and int(again.detector["k"]) == 10
    x = triple(np.vstack([priced(20), spread(20)]))
    np.testing.assert_allclose(again.open_ended(*x), scale.open_ended(*x), atol=1e-6)
    # a scale without a bank (an older scale.json) removes a stale bank and loads without one
    plain, *_ = fitted()
    plain.save(tmp_path)
    assert not (tmp_path / BANK_FILE).exists() and OneScale.load(tmp_path).bank is None
    # a detector that needs its bank does not load without it
    scale.save(tmp_path)
    (tmp_path / BANK_FILE).unlink()
    with pytest.raises(ValueError, match=BANK_FILE):
        OneScale.load(tmp_path)


def test_a_scale_json_written_before_the_bank_still_loads(tmp_path):
    """scale.json as rounds 3-5 wrote it: no `bank` key, a detector without k."""
    import json

    scale, *_ = fitted()
    data = scale.to_dict()
    data["detector"] = {"mean": [0.0] * 5, "std": [1.0] * 5, "w": [0.1] * 5, "b": 0.0}
    (tmp_path / "scale.json").write_text(json.dumps(data))
    old = OneScale.load(tmp_path)
    assert old.bank is None and old.open_ended(np.zeros((1, 2)), np.zeros((1, 3))).shape == (1,)

