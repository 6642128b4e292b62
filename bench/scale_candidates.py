"""Study-only one-scale candidates of rounds 8-10 (docs/decisions/one-scale.md), beside the study.

Round 8's `twins` counted a twin task's training rows as support; rounds 9 and 10 put a per-task
(or per-table) temperature and offset, mixed by the task posterior, on top of the scale. None
shipped, so they live here rather than in the serving layer (`predictor.scale`), as the density
detectors of rounds 5-6 do (bench/density_detector.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from pickwise.predictor.calibration import masked_bce
from pickwise.predictor.lengths import task_key
from pickwise.predictor.scale import OneScale


def twin_rows(n: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
    """[M, K] training rows per model and task, a twin task's rows (the same benchmark in another
    table, as `task_key` reads it for lengths) counted on the task too: a model measured on
    LLMRouter's gsm8k is measured on MMLU-57 + GSM8K's kind of prompt (round 8's support)."""
    keys = [task_key(t) for t in tasks]
    same = np.array([[a == b for b in keys] for a in keys], dtype=np.float64)
    return np.asarray(n, dtype=np.float64) @ same


def calibrated(logits: np.ndarray, tasks: np.ndarray, temperature: np.ndarray,
               bias: np.ndarray | None = None) -> np.ndarray:
    """logits / (P·T) (+ P·c): the per-task map, P the task posterior [N, K]."""
    out = logits / (tasks @ temperature)[:, None]
    return out if bias is None else out + (tasks @ bias)[:, None]


def fit_task_calibration(logits: np.ndarray, labels: np.ndarray, tasks: np.ndarray, *, bias: bool = False,
                         groups: np.ndarray | None = None, l2: float = 1e-3,
                         max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Per-task temperatures T [K] (and offsets c [K] if `bias`) for sigmoid(z / (P·T) + P·c), P the
    prompt's task posterior [N, K]: one table's scores can be sharper or flatter than another's, and
    the posterior says which table a prompt is of. Every model of a prompt shares the map, so the
    models' order on a prompt never changes. `l2` holds tasks with few rows near T = 1, c = 0. With
    `groups` [K] (say, each task's table), the tasks of a group share one T and c (returned per task)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    post = torch.as_tensor(tasks, dtype=torch.float64)
    k = post.shape[1]
    group = torch.as_tensor(np.arange(k) if groups is None else np.unique(groups, return_inverse=True)[1])
    log_t = torch.zeros(int(group.max()) + 1, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(int(group.max()) + 1, dtype=torch.float64, requires_grad=bias)
    opt = torch.optim.LBFGS([log_t, c] if bias else [log_t], lr=0.5, max_iter=max_iter,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        mapped = z / (post @ log_t[group].exp())[:, None] + (post @ c[group])[:, None]
        loss = masked_bce(mapped, y) + l2 * (log_t.square().sum() + c.square().sum())
        loss.backward()
        return loss

    opt.step(closure)
    return log_t.detach()[group].exp().clamp(0.05, 20.0).numpy(), c.detach()[group].numpy()


@dataclass
class TaskCalibratedScale(OneScale):
    """A OneScale whose blended logits then go through `calibrated` (rounds 9-10)."""

    task_temperature: np.ndarray | None = None
    task_bias: np.ndarray | None = None

    @classmethod
    def of(cls, scale: OneScale, temperature: np.ndarray, bias: np.ndarray | None = None) -> TaskCalibratedScale:
        return cls(**scale.__dict__, task_temperature=temperature, task_bias=bias)

    def plain(self) -> OneScale:
        """The scale without the map (what the map is fitted on)."""
        return OneScale(**{f.name: getattr(self, f.name) for f in fields(OneScale)})

    def combine(self, trained_logits: np.ndarray, tasks: np.ndarray, u: np.ndarray,
                pooled: np.ndarray | None = None) -> dict:
        out = super().combine(trained_logits, tasks, u, pooled)
        out["logits"] = calibrated(out["logits"], np.asarray(tasks, dtype=np.float64), self.task_temperature,
                                   self.task_bias)
        return out
