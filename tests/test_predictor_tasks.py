"""Task-mixture prompt vectors: labels, the mixture itself, training with the task loss, artifact checks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pickwise.predictor.artifact import ArtifactError, load_model, read_meta
from pickwise.predictor.backbone import encode_texts, load_tokenizer, pad_batch, tiny_backbone
from pickwise.predictor.dataset import build_training_set, task_labels
from pickwise.predictor.model import ModelConfig, TaskMixture
from pickwise.predictor.train import TrainConfig, task_targets, task_vocabulary, train
from tests.tables import synthetic_table

TINY = ModelConfig(dim=8, hidden=16, lora_layers=1, lora_r=4, max_len=32)


def test_task_labels_are_qualified_by_table_and_fall_back_to_the_task():
    table = synthetic_table(6)
    task, subtask = task_labels(table)
    assert list(task[:3]) == ["synthetic/math", "synthetic/code", "synthetic/trivia"]
    assert list(subtask) == list(task)  # no finer column: the subtask is the task
    table.subtask = np.array(["algebra", "", "history", "geometry", "py", ""], dtype=object)
    table.task[5] = ""
    task, subtask = task_labels(table)
    assert subtask[0] == "synthetic/math/algebra" and subtask[1] == "synthetic/code"
    assert task[5] == "synthetic" and subtask[5] == "synthetic"
    data = build_training_set([table])
    assert list(data.subtask) == list(subtask)


def test_unseen_task_is_ignored_by_the_loss():
    vocab = task_vocabulary(np.array(["a", "b", "c"], dtype=object), np.array([0, 1]))
    assert vocab == ["a", "b"]
    assert task_targets(np.array(["b", "c", "a"], dtype=object), vocab).tolist() == [1, -100, 0]


def test_prompt_vector_is_the_posterior_weighted_task_vector():
    mix = TaskMixture(width=4, hidden=4, dim=2, n_tasks=2, n_subtasks=3, dropout=0.0)
    with torch.no_grad():
        mix.task_vectors.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        mix.subtask_vectors.copy_(torch.tensor([[2.0, 2.0], [0.0, 0.0], [-2.0, 0.0]]))
    task_logits = torch.tensor([[0.0, float(np.log(3.0))]])  # p = (0.25, 0.75)
    subtask_logits = torch.tensor([[0.0, -1e9, -1e9]])  # all mass on subtask 0
    np.testing.assert_allclose(mix.mix(task_logits, subtask_logits).detach().numpy(), [[2.25, 2.75]], atol=1e-6)


def test_training_learns_to_read_the_task_from_the_prompt():
    table = synthetic_table(120)
    config = TrainConfig(model=TINY, epochs=6, epoch_fraction=1.0, batch_size=16, lr_head=1e-2, patience=6)
    result = train([table], None, config, backbone=tiny_backbone(), progress=False)
    model = result.model
    assert result.meta["tasks"] == ["synthetic/code", "synthetic/math", "synthetic/trivia"]
    assert model.config.n_tasks == 3 and model.config.n_subtasks == 0 and not hasattr(model, "head")
    enc = encode_texts(load_tokenizer(), table.prompts, 32, 0.4)
    ids, mask = pad_batch(enc.ids)
    with torch.no_grad():
        u, (task_logits, _) = model.prompt_outputs(model.top(model.stem(ids, mask), mask))
    predicted = np.array(result.meta["tasks"])[task_logits.argmax(-1).numpy()]
    assert np.mean(predicted == task_labels(table)[0]) > 0.9  # chance is 1/3
    # different tasks give different prompt vectors, so the router can tell them apart
    assert torch.cdist(u[:1], u[1:2]).item() > 1e-3


def test_without_tasks_the_prompt_head_is_used():
    table = synthetic_table(40)
    off = train([table], None, TrainConfig(model=TINY, epochs=1, batch_size=16, use_tasks=False),
                backbone=tiny_backbone(), progress=False)
    table.task[:] = "only"
    single = train([table], None, TrainConfig(model=TINY, epochs=1, batch_size=16),
                   backbone=tiny_backbone(), progress=False)
    for result in (off, single):
        assert result.model.config.n_tasks == 0 and hasattr(result.model, "head") and result.meta["tasks"] == []


def test_heads_that_do_not_match_the_config_are_a_clear_error(tiny_artifact, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    meta = read_meta(broken)
    assert meta["model_config"]["n_tasks"] > 0  # the shared tiny artifact is a task-mixture model
    meta["model_config"]["n_tasks"] = 0
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="does not match model_config"):
        load_model(broken, tiny_backbone())
