"""Study-only open-ended detectors built on a bank of priced training prompts (docs/decisions/one-scale.md).

Round 5 (`DensityScale`, space "pooled"): p_open = logistic(w · s_nn + b), s_nn the mean cosine
similarity of a prompt's pooled embedding to its k nearest prompts of the bank, so a plain question
near TriviaQA's reads as TriviaQA's kind. Round 6: the same test on unit-norm u (`DensityScale`,
space "u"), and round 3's logistic detector with s_nn as one more feature (`BothScale`). None of
them ships unless its round's rule says so, so they live beside the study, not in the serving layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pickwise.predictor.scale import OneScale, fit_detector, sigmoid


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def stored_bank(x: np.ndarray) -> np.ndarray:
    """Unit-norm rows rounded to float16, as an artifact would store them."""
    return unit_rows(x).astype(np.float16).astype(np.float32)


def nearest_similarity(x: np.ndarray, bank: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """s_nn [N]: mean cosine similarity of each row of `x` to its `k` nearest rows of the unit-norm
    `bank`; in chunks, so a large batch never holds an [N, B] matrix at once."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != bank.shape[1]:
        raise ValueError(f"embeddings of shape {x.shape} do not match the density bank's width {bank.shape[1]}")
    k = min(k, len(bank))
    out = np.empty(len(x))
    for start in range(0, len(x), chunk):
        sims = unit_rows(x[start:start + chunk]) @ bank.T
        out[start:start + chunk] = np.partition(sims, -k, axis=1)[:, -k:].mean(1)
    return out


def fit_density_detector(bank_x: np.ndarray, pos_x: np.ndarray, neg_x: np.ndarray,
                         neg_groups: np.ndarray | None = None, k: int = 10) -> tuple[dict, np.ndarray]:
    """(detector {k, w, b}, unit-norm bank): fitted like `fit_detector` (positives open-ended,
    the negatives' groups weighing the same). Negatives must not be in the bank (they would find
    themselves)."""
    bank = stored_bank(bank_x)
    s_pos, s_neg = nearest_similarity(pos_x, bank, k), nearest_similarity(neg_x, bank, k)
    fit = fit_detector(s_pos[:, None], s_neg[:, None], neg_groups=neg_groups)
    w = float(fit["w"][0] / fit["std"][0])  # un-standardised: the rule is stated on s_nn itself
    return {"k": k, "w": w, "b": float(fit["b"]) - w * float(fit["mean"][0])}, bank


def _space(u: np.ndarray, pooled: np.ndarray | None, space: str) -> np.ndarray:
    if space == "u":
        return u
    if pooled is None:
        raise ValueError("this detector reads the pooled embedding: pass prompt_features().pooled")
    return pooled


@dataclass
class DensityScale(OneScale):
    """A OneScale whose p_open is the density test (`detector` {k, w, b}) on the pooled embedding
    (round 5) or on u (round 6, `space` "u")."""

    bank: np.ndarray | None = None  # [B, width] unit-norm embeddings of the bank prompts in `space`
    space: str = "pooled"

    @classmethod
    def of(cls, scale: OneScale, detector: dict, bank: np.ndarray, space: str = "pooled") -> DensityScale:
        return cls(**{**scale.__dict__, "detector": detector}, bank=bank, space=space)

    def open_ended(self, u: np.ndarray, tasks: np.ndarray, pooled: np.ndarray | None = None) -> np.ndarray:
        s_nn = nearest_similarity(_space(u, pooled, self.space), self.bank, int(self.detector["k"]))
        return sigmoid(self.detector["w"] * s_nn + self.detector["b"])


def fit_both_detector(bank_pooled: np.ndarray, pos: tuple, neg: tuple, neg_groups: np.ndarray | None = None,
                      k: int = 10, c: float = 0.01) -> tuple[dict, np.ndarray]:
    """Round 6's `scale6-both`: `fit_detector` on [u, task posterior, pooled, s_nn]; `pos`/`neg` are
    (u, tasks, pooled) triples, s_nn on the pooled embedding against the bank (standardised with
    the rest). Returns (detector {mean, std, w, b, k}, unit-norm bank)."""
    bank = stored_bank(bank_pooled)
    x = lambda u, t, p: np.hstack([u, t, p, nearest_similarity(p, bank, k)[:, None]])  # noqa: E731
    return fit_detector(x(*pos), x(*neg), c=c, neg_groups=neg_groups) | {"k": k}, bank


@dataclass
class BothScale(OneScale):
    """A OneScale whose p_open is round 3's logistic detector reading s_nn (pooled) as one more feature."""

    bank: np.ndarray | None = None  # [B, width] unit-norm pooled embeddings of the bank prompts

    @classmethod
    def of(cls, scale: OneScale, detector: dict, bank: np.ndarray) -> BothScale:
        return cls(**{**scale.__dict__, "detector": detector}, bank=bank)

    def open_ended(self, u: np.ndarray, tasks: np.ndarray, pooled: np.ndarray | None = None) -> np.ndarray:
        pooled = _space(u, pooled, "pooled")
        s_nn = nearest_similarity(pooled, self.bank, int(self.detector["k"]))
        x = (np.hstack([u, tasks, pooled, s_nn[:, None]]) - self.detector["mean"]) / self.detector["std"]
        return sigmoid(x @ self.detector["w"] + float(self.detector["b"]))
