"""Round 5's open-ended detector (docs/decisions/one-scale.md): a density test, for the study only.

p_open = logistic(w · s_nn + b), s_nn the mean cosine similarity of a prompt's pooled embedding to
its k nearest prompts of a bank of priced training prompts, so a plain question near TriviaQA's
reads as TriviaQA's kind. It did not ship (docs/decisions/one-scale.md, round 5), so
it lives beside the study rather than in the serving layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pickwise.predictor.scale import OneScale, fit_detector, sigmoid


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_similarity(pooled: np.ndarray, bank: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """s_nn [N]: mean cosine similarity of each pooled embedding to its `k` nearest rows of the
    unit-norm `bank`; in chunks, so a large batch never holds an [N, B] matrix at once."""
    pooled = np.asarray(pooled)
    if pooled.ndim != 2 or pooled.shape[1] != bank.shape[1]:
        raise ValueError(f"pooled embeddings of shape {pooled.shape} do not match the density bank's width {bank.shape[1]}")
    k = min(k, len(bank))
    out = np.empty(len(pooled))
    for start in range(0, len(pooled), chunk):
        sims = unit_rows(pooled[start:start + chunk]) @ bank.T
        out[start:start + chunk] = np.partition(sims, -k, axis=1)[:, -k:].mean(1)
    return out


def fit_density_detector(bank_pooled: np.ndarray, pos_pooled: np.ndarray, neg_pooled: np.ndarray,
                         neg_groups: np.ndarray | None = None, k: int = 10) -> tuple[dict, np.ndarray]:
    """(detector {k, w, b}, unit-norm bank): fitted like `fit_detector` (positives open-ended,
    the negatives' groups weighing the same). Negatives must not be in the bank (they would find
    themselves). The bank is rounded to float16, as an artifact would have stored it."""
    bank = unit_rows(bank_pooled).astype(np.float16).astype(np.float32)
    s_pos, s_neg = nearest_similarity(pos_pooled, bank, k), nearest_similarity(neg_pooled, bank, k)
    fit = fit_detector(s_pos[:, None], s_neg[:, None], neg_groups=neg_groups)
    w = float(fit["w"][0] / fit["std"][0])  # un-standardised: the rule is stated on s_nn itself
    return {"k": k, "w": w, "b": float(fit["b"]) - w * float(fit["mean"][0])}, bank


@dataclass
class DensityScale(OneScale):
    """A OneScale whose p_open is the density test on the pooled embedding (`detector` {k, w, b})."""

    bank: np.ndarray | None = None  # [B, width] unit-norm pooled embeddings

    @classmethod
    def of(cls, scale: OneScale, detector: dict, bank: np.ndarray) -> DensityScale:
        return cls(**{**scale.__dict__, "detector": detector}, bank=bank)

    def open_ended(self, u: np.ndarray, tasks: np.ndarray, pooled: np.ndarray | None = None) -> np.ndarray:
        if pooled is None:
            raise ValueError("the density detector reads the pooled embedding: pass prompt_features().pooled")
        s_nn = nearest_similarity(pooled, self.bank, int(self.detector["k"]))
        return sigmoid(self.detector["w"] * s_nn + self.detector["b"])
