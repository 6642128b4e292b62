"""A length model for the tiny test artifact: made trained length vectors and probe vectors of two kinds."""
from __future__ import annotations

import numpy as np

LONG_TABLE = "mmlu57_gsm8k_9models"  # worked maths answers: long; every other probe prompt: short here


def probe_kind_vectors(dim: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The shipped probe set's ids with prompt vectors whose first coordinate tells the two kinds apart
    (the tiny test encoder gives nearly one vector to every prompt, so they are made, not encoded)."""
    from pickwise.registry.probes.probe_set import load_probe_set

    entries = load_probe_set()
    long = np.array([e.table == LONG_TABLE for e in entries])
    u = np.random.default_rng(seed).normal(scale=0.3, size=(len(entries), dim))
    u[:, 0] = np.where(long, 1.5, -1.5)
    return [e.prompt_id for e in entries], u, long
