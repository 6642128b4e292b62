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

