"""Smearing by task and correctness: what a trained model's expected output count is the mean of.

Why: the length model fits log2 counts, which estimates a median; cost is linear in the count, so
the count select prices is the median times a smearing factor, the training-row mean of 2^residual.
One factor per model assumes lengths spread alike around the median on every prompt, yet failing
answers run longer and some tasks have long tails where others do not. A `SmearTable` keeps, per
trained model, the factor on each task of its tables and for right and wrong answers, and the
count becomes 2^z x sum_k pi_k (p s_right,k + (1 - p) s_wrong,k), with pi the prompt's task
posterior (twins counted as the task, `lengths.task_key`) and p the model's predicted quality
(decision output-lengths.md, round 4). Mass off the model's tasks gets its own overall factor.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pickwise.predictor.lengths import log2_tokens, task_key

KINDS = ("correct-smear", "task-smear", "task-correct-smear")
PSEUDO = 20.0  # each cell's mean is shrunk towards its parent's with this many pseudo-answers
RIGHT, WRONG, EITHER = 0, 1, 2  # the last axis of `SmearTable.factors`; EITHER is used without a quality


@dataclass(frozen=True)
class SmearTable:
    """[M, K + 1, 3] smearing factors (not log) per trained model (the length model's `names` order), per
    task of `task_names` (column K: any other prompt), for right, wrong and either answers."""

    kind: str
    task_names: tuple[str, ...]
    factors: np.ndarray

    def factor(self, row: int, tables: Iterable[str], tasks: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        """[N]: trained model `row` (with length rows on `tables`)'s factor on prompts with task posterior
        `tasks` [N, K] and, when known, its predicted quality [N]."""
        tasks = np.atleast_2d(np.asarray(tasks, dtype=np.float64))
        if tasks.shape[1] != len(self.task_names):
            raise ValueError(f"task posterior has {tasks.shape[1]} tasks, the smear table {len(self.task_names)}")
        f = self.factors[row]
        if quality is None:
            per_task = np.broadcast_to(f[:, EITHER], (len(tasks), f.shape[0]))
        else:
            p = np.clip(np.asarray(quality, dtype=np.float64), 0.0, 1.0)[:, None]
            per_task = p * f[:, RIGHT] + (1.0 - p) * f[:, WRONG]
        mass = tasks @ _assignment(self.task_names, tuple(sorted(tables)))
        return (mass * per_task[:, :-1]).sum(axis=1) + np.clip(1.0 - mass.sum(axis=1), 0.0, 1.0) * per_task[:, -1]


@functools.lru_cache(maxsize=256)
def _assignment(task_names: tuple[str, ...], tables: tuple[str, ...]) -> np.ndarray:
    """[K, K] 0/1: posterior mass on task k' counts for task k when k is of `tables` and k' is k or a twin
    of it on a table outside `tables` (each k' to one k at most, so no mass is counted twice)."""
    keys = [task_key(n) for n in task_names]
    own = [n.split("/", 1)[0] in tables for n in task_names]
    first = {}
    for k, (key, o) in enumerate(zip(keys, own)):
        if o:
            first.setdefault(key, k)
    out = np.zeros((len(task_names), len(task_names)))
    for src, key in enumerate(keys):
        target = src if own[src] else first.get(key)
        if target is not None:
            out[src, target] = 1.0
    out.flags.writeable = False  # shared through the cache
    return out


def fit_smear_table(kind: str, model, task_names: Sequence[str], u: np.ndarray, task: np.ndarray,
                    names: Sequence[str], counts: np.ndarray, quality: np.ndarray) -> SmearTable:
    """The `kind` table for `model` (a `LengthModel`) from training answers: prompts with vectors `u` [n, d]
    and task index `task` [n] into `task_names` (-1: none of them), answers of the trained models `names`
    (canonical, may repeat) with `counts` [n, len(names)] and qualities in [0, 1] (NaN: no answer)."""
    if kind not in KINDS:
        raise ValueError(f"smear kind must be one of {KINDS}, got {kind!r}")
    k_all = len(task_names)
    vectors = [model.trained_vector([n]) for n in names]
    if any(v is None for v in vectors):
        raise KeyError(f"no trained length vector for {[n for n, v in zip(names, vectors) if v is None]}")
    z = model.predict(u, list(names), form="median", vectors=vectors).log2_median
    e = np.exp2(log2_tokens(counts) - z)
    ok = np.isfinite(e) & np.isfinite(quality)
    y = np.where(ok, quality, 0.0)
    # sums [M, K + 1, 3] of weights and weighted 2^r: column K gathers every answer (the model's overall)
    w = np.zeros((len(model.names), k_all + 1, 3))
    s = np.zeros_like(w)
    index = {n: j for j, n in enumerate(model.names)}
    for col, name in enumerate(names):
        m, rows = index[name], np.flatnonzero(ok[:, col])
        for which, weight in ((RIGHT, y[rows, col]), (WRONG, 1.0 - y[rows, col]), (EITHER, np.ones(len(rows)))):
            for cell in (task[rows], np.full(len(rows), k_all)):
                keep = cell >= 0
                np.add.at(w[m, :, which], cell[keep], weight[keep])
                np.add.at(s[m, :, which], cell[keep], (weight * e[rows, col])[keep])
    overall = np.exp2(model.log2_smear)[:, None]  # the shipped factor: every cell's last parent
    by_model = (s[:, k_all] + PSEUDO * overall) / (w[:, k_all] + PSEUDO)  # [M, 3]
    by_model[:, EITHER] = overall[:, 0]
    if kind == "correct-smear":
        factors = np.repeat(by_model[:, None, :], k_all + 1, axis=1)
    else:
        parent = by_model if kind == "task-correct-smear" else np.repeat(overall, 3, axis=1)
        factors = (s + PSEUDO * parent[:, None, :]) / (w + PSEUDO)
        if kind == "task-smear":  # one factor per task, whatever the answer
            factors = np.repeat(factors[:, :, EITHER:], 3, axis=2)
        factors[:, k_all] = parent
    return SmearTable(kind, tuple(task_names), factors)
