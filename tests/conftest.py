"""Shared fixtures: synthetic routing tables and a tiny trained predictor artifact.

The tiny artifact is trained for real (same code path as `pickwise train`) on a random
few-thousand-parameter BERT, so tests of everything above the predictor run in seconds
without the real backbone.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pickwise.predictor.data import RoutingTable  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
TINY_MODELS = ["gpt-4-1106-preview", "Llama-2-7b-hf", "gemini-1.5-flash-002"]

TOPICS = {
    "math": ["Compute the integral of x^2 from 0 to {n}.", "What is {n} times {n} plus 3?"],
    "code": ["Write a Python function that returns the {n}th Fibonacci number.", "Fix this loop: for i in range({n}) print(i)"],
    "trivia": ["Who was the {n}th president of the United States?", "Name a river longer than {n} km."],
}


def synthetic_table(n: int = 120, seed: int = 0, models=tuple(TINY_MODELS), name: str = "synthetic") -> RoutingTable:
    """A small table where quality depends on the topic, so a router has something to learn."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    prompts, task = [], []
    for i in range(n):
        topic = topics[i % len(topics)]
        prompts.append(TOPICS[topic][i % 2].format(n=i + 1))
        task.append(topic)
    strength = {"math": [0.9, 0.2, 0.6], "code": [0.8, 0.3, 0.7], "trivia": [0.95, 0.6, 0.5]}
    quality = np.array([[float(rng.random() < strength[t][j % 3]) for j in range(len(models))] for t in task])
    quality[rng.random(quality.shape) < 0.05] = np.nan
    in_tokens = np.array([len(p.split()) * 1.3 for p in prompts])
    price = np.array([10.0, 0.2, 0.3])[: len(models)]
    cost = in_tokens[:, None] * price[None, :] / 1e6 + 50 * price[None, :] / 1e6
    return RoutingTable(
        name=name,
        path=Path(f"/nonexistent/{name}.parquet"),
        sha256="0" * 64,
        prompt_ids=np.array([f"{name}-{i}" for i in range(n)], dtype=object),
        prompts=prompts,
        task=np.array(task, dtype=object),
        model_names=list(models),
        quality=quality,
        cost=cost,
        in_tokens=in_tokens,
        out_tokens=np.full((n, len(models)), 50.0),
    )


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory) -> Path:
    """A predictor artifact trained (1 epoch) on a tiny random BERT and a synthetic table."""
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.model import ModelConfig
    from pickwise.predictor.train import TrainConfig, train

    out = tmp_path_factory.mktemp("artifact") / "tiny"
    config = TrainConfig(model=ModelConfig(dim=8, hidden=16, lora_layers=1, lora_r=4, max_len=32), epochs=2, epoch_fraction=1.0, batch_size=16)
    probe_ids = [f"synthetic-{i}" for i in range(0, 120, 2)]
    table = synthetic_table()
    texts = [table.prompts[int(i.split("-")[1])] for i in probe_ids]
    train([table], out, config, backbone=tiny_backbone(), progress=False, probe_prompts=(probe_ids, texts))
    return out


@pytest.fixture(scope="session")
def tiny_predictor(tiny_artifact):
    """The tiny artifact loaded (LoRA merged) on the same tiny random BERT."""
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    return load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone())
