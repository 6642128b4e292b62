"""The one-scale layer (predictor.scale): joint ability scale, support flags, set calibration. No encoder."""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.predictor.scale import (
    BANK_FILE,
    OneScale,
    dominance_pairs,
    fit_density_detector,
    fit_one_scale,
    fit_set_rho,
    nearest_similarity,
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


# ----------------------------------------------------------------------------- the density detector
def clusters(seed: int = 0, width: int = 32):
    """Priced prompts as tight clusters around 8 directions; open-ended ones spread anywhere."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, width))

    def priced(n):
        return centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, width))

    return priced, (lambda n: rng.normal(size=(n, width))), centres


def density_scale(seed: int = 0):
    priced, spread, centres = clusters(seed)
    detector, bank = fit_density_detector(priced(400), spread(200), priced(300), neg_groups=np.arange(300) % 3, k=10)
    scale, *_ = fitted()
    scale.detector, scale.bank = detector, bank
    return scale, priced, spread, centres


def test_density_detector_reads_prompts_near_the_bank_as_closed_and_far_ones_as_open():
    scale, priced, spread, _ = density_scale()
    assert scale.detector["w"] < 0  # more similar to priced prompts: less open-ended
    near, far = priced(100), spread(100)
    no_u, no_tasks = np.zeros((100, 0)), np.zeros((100, 0))
    assert np.mean(scale.open_ended(no_u, no_tasks, near) < 0.5) > 0.95
    assert np.mean(scale.open_ended(no_u, no_tasks, far) >= 0.5) > 0.95
    with pytest.raises(ValueError, match="pooled"):
        scale.open_ended(no_u, no_tasks, None)
    with pytest.raises(ValueError, match="width"):
        scale.open_ended(no_u, no_tasks, near[:, :5])


def test_density_p_open_falls_as_similarity_to_the_bank_rises():
    scale, *_, centres = density_scale()
    rng = np.random.default_rng(3)
    away = rng.normal(size=centres.shape[1])
    # from a random direction towards a bank cluster's centre: s_nn rises, p_open must fall
    path = np.array([(1 - t) * away + t * centres[0] for t in np.linspace(0, 1, 21)])
    s_nn = nearest_similarity(path, scale.bank, 10)
    p_open = scale.open_ended(np.zeros((21, 0)), np.zeros((21, 0)), path)
    order = np.argsort(s_nn)
    assert s_nn[order[-1]] > s_nn[order[0]] + 0.3
    assert np.all(np.diff(p_open[order]) <= 1e-12)


def test_density_bank_round_trips_through_save_and_load(tmp_path):
    scale, priced, *_ = density_scale()
    scale.save(tmp_path)
    assert (tmp_path / BANK_FILE).exists() and np.load(tmp_path / BANK_FILE).dtype == np.float16
    again = OneScale.load(tmp_path)
    np.testing.assert_array_equal(again.bank, scale.bank)  # the fitted bank is already float16-exact
    assert again.detector == scale.detector
    x = priced(50)
    np.testing.assert_allclose(again.open_ended(np.zeros((50, 0)), np.zeros((50, 0)), x),
                               scale.open_ended(np.zeros((50, 0)), np.zeros((50, 0)), x))
    # a logistic-detector scale saved over it takes the bank file away; one without its bank is refused
    plain, *_ = fitted()
    plain.save(tmp_path)
    assert not (tmp_path / BANK_FILE).exists() and OneScale.load(tmp_path).bank is None
    scale.save(tmp_path)
    (tmp_path / BANK_FILE).unlink()
    with pytest.raises(ValueError, match=BANK_FILE):
        OneScale.load(tmp_path)


def test_logistic_detector_scale_loads_as_before(tmp_path):
    scale, *_ = fitted()
    width = 3
    scale.detector = {"mean": np.zeros(width), "std": np.ones(width), "w": np.array([1.0, -1.0, 0.5]), "b": np.array(0.2)}
    scale.save(tmp_path)
    again = OneScale.load(tmp_path)
    u, tasks = np.array([[0.3]]), np.array([[0.1, 0.2]])
    np.testing.assert_allclose(again.open_ended(u, tasks), sigmoid(np.array([0.3 - 0.1 + 0.1 + 0.2])))
