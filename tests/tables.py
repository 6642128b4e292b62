"""Synthetic routing tables: quality depends on the topic, so a router has something to learn."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pickwise.predictor.data import RoutingTable

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
