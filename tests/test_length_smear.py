"""Smearing by task and correctness (predictor/length_smear.py): fitted from training answers, used by predict."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pickwise.predictor.length_smear import PSEUDO, fit_smear_table
from pickwise.predictor.lengths import FeatureMap, LengthModel
from pickwise.registry.schema import ModelSpec
from tests.registry_samples import model as model_entry

TASKS = ["table_a/x", "table_a/y", "no_lengths/X"]  # X: a twin of table A's x on a table without length rows
SMEAR = 0.5  # the model's one log2 smearing factor


def one_model() -> LengthModel:
    """A model whose median is 2^3 tokens on every prompt, with lengths on table A."""
    return LengthModel(["m"], np.zeros((1, 2)), np.array([3.0]), np.array([SMEAR]), 0.5, FeatureMap(),
                       model_tables={"m": ["table_a"]}, meta={"count_form": "mean"})


def answers():
    """400 training answers: right ones 2^3 tokens (the median), wrong ones 2x that on task x, 8x on task y."""
    task = np.repeat([0, 1], 200)
    right = np.tile([1.0, 0.0], 200)
    wrong_factor = np.where(task == 0, 2.0, 8.0)
    counts = np.where(right == 1.0, 8.0, 8.0 * wrong_factor)
    return np.zeros((400, 2)), task, counts[:, None], right[:, None]


def shrunk(total: float, n: float, parent: float) -> float:
    return (total + PSEUDO * parent) / (n + PSEUDO)


def test_wrong_answers_and_long_tailed_tasks_get_larger_factors():
    u, task, counts, quality = answers()
    model, overall = one_model(), 2.0 ** SMEAR
    by_answer = fit_smear_table("correct-smear", model, TASKS, u, task, ["m"], counts, quality)
    right, wrong = shrunk(200 * 1.0, 200, overall), shrunk(100 * 2.0 + 100 * 8.0, 200, overall)
    one = np.array([[1.0, 0.0, 0.0]])
    assert by_answer.factor(0, ["table_a"], one, np.array([1.0]))[0] == pytest.approx(right)
    assert by_answer.factor(0, ["table_a"], one, np.array([0.25]))[0] == pytest.approx(0.25 * right + 0.75 * wrong)
    assert by_answer.factor(0, ["table_a"], one, None)[0] == pytest.approx(overall)  # no quality: the one factor

    by_task = fit_smear_table("task-smear", model, TASKS, u, task, ["m"], counts, quality)
    x, y = shrunk(100 * 1.0 + 100 * 2.0, 200, overall), shrunk(100 * 1.0 + 100 * 8.0, 200, overall)
    posterior = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(by_task.factor(0, ["table_a"], posterior, np.array([1.0, 0.0, 1.0, 0.5])),
                               [x, y, x, (x + y) / 2])  # the twin X counts as x; quality does not matter here

    both = fit_smear_table("task-correct-smear", model, TASKS, u, task, ["m"], counts, quality)
    right_y = shrunk(100 * 1.0, 100, right)
    wrong_y = shrunk(100 * 8.0, 100, wrong)
    assert both.factor(0, ["table_a"], posterior[1:2], np.array([0.5]))[0] == pytest.approx((right_y + wrong_y) / 2)
    off_tasks = both.factor(0, ["table_b"], posterior[:1], np.array([0.5]))[0]  # no mass on the model's tasks
    assert off_tasks == pytest.approx((right + wrong) / 2)


def test_a_task_posterior_of_the_wrong_width_is_refused():
    u, task, counts, quality = answers()
    table = fit_smear_table("task-smear", one_model(), TASKS, u, task, ["m"], counts, quality)
    with pytest.raises(ValueError, match="3"):
        table.factor(0, ["table_a"], np.ones((1, 2)), None)
    with pytest.raises(ValueError, match="smear kind"):
        fit_smear_table("per-prompt", one_model(), TASKS, u, task, ["m"], counts, quality)


def test_predict_prices_trained_vectors_by_the_table_and_leaves_the_rest():
    u, task, counts, quality = answers()
    base = one_model()
    model = dataclasses.replace(base, smear=fit_smear_table("correct-smear", base, TASKS, u, task, ["m"], counts,
                                                            quality))
    models = [ModelSpec.model_validate(model_entry("m-spec", aliases=["m"], expected_output_tokens=50)),
              ModelSpec.model_validate(model_entry("new", expected_output_tokens=77))]
    probe = dataclasses.replace(model.trained_vector(["m"]), source="probe")
    posterior, p = np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 0.3]])
    plain = model.predict(u[:1], models).tokens
    assert plain[0, 0] == pytest.approx(2.0 ** (3 + SMEAR))  # without the task posterior: the one factor
    priced = model.predict(u[:1], models, tasks=posterior, quality=p).tokens
    wrong = shrunk(100 * 2.0 + 100 * 8.0, 200, 2.0 ** SMEAR)
    assert priced[0, 0] == pytest.approx(8.0 * wrong) and priced[0, 1] == 77.0  # a sure failure; the registry prior
    kept = model.predict(u[:1], models, vectors=[probe, None], tasks=posterior, quality=p).tokens
    assert kept[0, 0] == pytest.approx(2.0 ** (3 + SMEAR))  # a probe-fitted vector keeps its own factor
