"""The study-only density detectors (bench.density_detector: rounds 5 and 6), on synthetic embeddings."""
from __future__ import annotations

import numpy as np
import pytest

from bench.density_detector import DensityScale, fit_density_detector
from pickwise.predictor.scale import nearest_similarity
from tests.test_predictor_scale import fitted


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
    return DensityScale.of(scale, detector, bank), priced, spread, centres


def test_prompts_near_the_bank_read_closed_and_far_ones_open():
    scale, priced, spread, _ = density_scale()
    assert scale.detector["w"] < 0  # more similar to priced prompts: less open-ended
    near, far = priced(100), spread(100)
    none = np.zeros((100, 0))
    assert np.mean(scale.open_ended(none, none, near) < 0.5) > 0.95
    assert np.mean(scale.open_ended(none, none, far) >= 0.5) > 0.95
    with pytest.raises(ValueError, match="pooled"):
        scale.open_ended(none, none, None)
    with pytest.raises(ValueError, match="width"):
        scale.open_ended(none, none, near[:, :5])


def test_p_open_falls_as_similarity_to_the_bank_rises():
    scale, *_, centres = density_scale()
    away = np.random.default_rng(3).normal(size=centres.shape[1])
    # from a random direction towards a bank cluster's centre: s_nn rises, p_open must fall
    path = np.array([(1 - t) * away + t * centres[0] for t in np.linspace(0, 1, 21)])
    s_nn = nearest_similarity(path, scale.bank, 10)
    p_open = scale.open_ended(np.zeros((21, 0)), np.zeros((21, 0)), path)
    order = np.argsort(s_nn)
    assert s_nn[order[-1]] > s_nn[order[0]] + 0.3
    assert np.all(np.diff(p_open[order]) <= 1e-12)


def test_the_density_p_open_is_what_cuts_support_in_the_blend():
    scale, priced, spread, _ = density_scale()
    plain, *_ = fitted()
    np.testing.assert_array_equal(scale.ability, plain.ability)  # only the detector differs
    assert scale.tau == plain.tau and scale.base_penalty == plain.base_penalty
    tasks = np.tile([[1.0, 0.0, 0.0]], (2, 1))  # both read as t1/easy, where every t1 model has rows
    pooled = np.vstack([priced(1), spread(1)])
    out = scale.combine(np.zeros((2, 4)), tasks, np.zeros((2, 0)), pooled)
    assert out["open_ended"][0] < 0.5 <= out["open_ended"][1]
    assert out["support"][0, 0] > out["support"][1, 0]  # the far prompt loses model A's support


# ---- round 6: the density test on u (its other candidate, s_nn in the logistic detector, is
# the serving layer's: tests/test_predictor_scale.py)
def test_the_u_space_density_test_reads_u_and_needs_no_pooled_embedding():
    priced, spread, _ = clusters(1, width=16)
    detector, bank = fit_density_detector(priced(400), spread(200), priced(300), k=10)
    scale, *_ = fitted()
    scale = DensityScale.of(scale, detector, bank, space="u")
    none = np.zeros((100, 0))
    assert np.mean(scale.open_ended(priced(100), none, None) < 0.5) > 0.95
    assert np.mean(scale.open_ended(spread(100), none, None) >= 0.5) > 0.95


def test_negatives_leave_out_the_bank_and_with_texts_its_duplicates():
    from bench.one_scale_study import negative_rows

    split = np.array(["train"] * 5 + ["val"])
    texts = np.array(["a", "b", "a", "c", "d", "d"], object)
    bank = np.array([0, 4])
    np.testing.assert_array_equal(negative_rows(split, bank), [1, 2, 3])
    np.testing.assert_array_equal(negative_rows(split, bank, texts), [1, 3])  # row 2 repeats bank row 0
