"""Study-only density detectors (docs/decisions/one-scale.md, rounds 5 and 6), beside the study.

p_open = logistic(w · s_nn + b), s_nn the mean cosine similarity of a prompt's embedding to its k
nearest prompts of a bank of priced training prompts: on the pooled embedding (round 5,
`scale5-density`) or on u (round 6, `scale6-u`). Neither shipped, so they live here rather than in
the serving layer; what did ship (round 6's s_nn as one more feature of the logistic detector) is
`OneScale`'s bank in `predictor.scale`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pickwise.predictor.scale import OneScale, fit_detector, nearest_similarity, sigmoid, stored_bank


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


@dataclass
class DensityScale(OneScale):
    """A OneScale whose p_open is the density test (`detector` {k, w, b}) against `bank`, on the
    pooled embedding (round 5) or on u (`space` "u", round 6)."""

    space: str = "pooled"

    @classmethod
    def of(cls, scale: OneScale, detector: dict, bank: np.ndarray, space: str = "pooled") -> DensityScale:
        return cls(**{**scale.__dict__, "detector": detector, "bank": bank}, space=space)

    def open_ended(self, u: np.ndarray, tasks: np.ndarray, pooled: np.ndarray | None = None) -> np.ndarray:
        if self.space == "pooled" and pooled is None:
            raise ValueError("the density detector reads the pooled embedding: pass prompt_features().pooled")
        s_nn = nearest_similarity(u if self.space == "u" else pooled, self.bank, int(self.detector["k"]))
        return sigmoid(self.detector["w"] * s_nn + self.detector["b"])
