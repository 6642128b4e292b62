"""Temperature scaling: one scalar T fitted on validation logits so that sigmoid(z / T) is calibrated.

A single temperature keeps the ranking of models per prompt intact (routing decisions at a
given willingness to pay change only through the probabilities' spacing) while fixing the
over-confidence that a network trained to convergence on 0/1 labels tends to have.
"""
from __future__ import annotations

import numpy as np
import torch


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the (prompt, model) pairs that have a result (labels not NaN)."""
    observed = ~torch.isnan(labels)
    if not observed.any():
        return logits.sum() * 0.0
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits[observed], labels[observed], reduction="mean"
    )


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The T > 0 minimising masked BCE of sigmoid(logits / T) against (soft) labels."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    if not (~torch.isnan(y)).any():
        return 1.0
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = masked_bce(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


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
