"""The study-only one-scale candidates (bench.scale_candidates: rounds 8-10), on synthetic data."""
from __future__ import annotations

import numpy as np

from bench.scale_candidates import TaskCalibratedScale, fit_task_calibration, twin_rows
from pickwise.predictor.scale import sigmoid
from tests.test_predictor_scale import fitted


def test_per_task_calibration_sharpens_only_the_task_that_needs_it():
    # task 0's logits are right; task 1's are twice too flat (its true logit is 2z)
    rng = np.random.default_rng(0)
    n = 4000
    post = np.zeros((n, 2))
    post[np.arange(n), rng.integers(0, 2, n)] = 1.0
    z = rng.normal(0.0, 1.5, (n, 3))
    truth = np.where(post[:, 1:] > 0, 2.0 * z, z)
    labels = (rng.random(z.shape) < sigmoid(truth)).astype(float)
    labels[rng.random(z.shape) < 0.1] = np.nan  # missing results are skipped
    t, c = fit_task_calibration(z, labels, post)
    assert abs(t[0] - 1.0) < 0.1 and abs(t[1] - 0.5) < 0.06 and not c.any()
    # tasks of one group share their temperature
    shared, _ = fit_task_calibration(z, labels, post, groups=np.array(["t", "t"]))
    assert shared[0] == shared[1] and 0.5 < shared[0] < 1.0
    # the scale applies it after its own temperature and never reorders a prompt's models
    scale, *_ = fitted()
    calibrated = TaskCalibratedScale.of(scale, np.array([1.0, 0.5, 1.0]), np.array([0.0, 0.2, 0.0]))
    tasks = np.array([[0.0, 1.0, 0.0]])
    trained = np.array([[0.3, -0.2, 0.1, 0.0]])
    after = calibrated.combine(trained, tasks, np.zeros((1, 0)))["logits"]
    before = calibrated.plain().combine(trained, tasks, np.zeros((1, 0)))["logits"]
    np.testing.assert_allclose(after, before * 2.0 + 0.2)
    np.testing.assert_array_equal(np.argsort(after), np.argsort(before))


def test_twin_rows_count_a_twin_tasks_rows_on_the_task():
    rows = np.array([[10.0, 0.0, 5.0], [0.0, 7.0, 0.0]])
    tasks = ["a/gsm8k", "b/gsm8k", "b/math"]
    np.testing.assert_array_equal(twin_rows(rows, tasks), [[10.0, 10.0, 5.0], [7.0, 7.0, 0.0]])
