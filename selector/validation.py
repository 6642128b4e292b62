"""Checks on the numeric arrays the solvers receive.

Solvers silently produce nonsense on NaN or on a "probability" of 1.7, so every public entry
point runs its inputs through here first and gets an error that names the offending cell.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from selector.errors import SelectorInputError


def _where(index: tuple[int, ...], labels: Sequence[str] | None) -> str:
    """Human-readable position of a cell: 'prompt 3, model gpt-4o' (or 'model 2')."""
    if len(index) == 1:
        col = index[0]
        return f"model {labels[col]}" if labels is not None else f"model {col}"
    row, col = index
    model = labels[col] if labels is not None else col
    return f"prompt {row}, model {model}"


def as_matrix(
    values,
    name: str,
    *,
    shape: tuple[int, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Return `values` as a float64 array, rejecting wrong shapes, NaN/inf and values outside [low, high]."""
    arr = np.asarray(values, dtype=np.float64)
    if shape is not None and arr.shape != shape:
        raise SelectorInputError(f"{name} has shape {arr.shape}, expected {shape}")
    bad = ~np.isfinite(arr)
    if low is not None:
        bad |= arr < low
    if high is not None:
        bad |= arr > high
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        value = arr[index]
        allowed = f" (must lie in [{low}, {high}])" if low is not None or high is not None else ""
        raise SelectorInputError(
            f"{name} has an invalid value {value!r} at {_where(index, labels)}{allowed}"
            f"; {int(bad.sum())} invalid cell(s) in total"
        )
    return arr


def quality_matrix(values, *, labels: Sequence[str] | None = None) -> np.ndarray:
    """A [prompts, models] matrix of predicted probabilities, each in [0, 1]."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise SelectorInputError(f"quality must be a 2-D [prompts, models] array, got shape {arr.shape}")
    return as_matrix(arr, "quality", low=0.0, high=1.0, labels=labels)


def per_prompt(values, name: str, n: int, *, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Broadcast a scalar or a length-n vector to one value per prompt."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise SelectorInputError(f"{name} must be a scalar or have {n} entries (one per prompt), got shape {arr.shape}")
    return as_matrix(arr, name, low=low, high=high)


def per_model_or_matrix(values, name: str, shape: tuple[int, int], *, labels: Sequence[str] | None = None) -> np.ndarray:
    """A [models] vector (same for every prompt) or a full [prompts, models] matrix, as a matrix."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and arr.shape == (shape[1],):
        arr = np.broadcast_to(arr, shape)
    return as_matrix(arr, name, shape=shape, low=0.0, labels=labels)


def scalar(value, name: str, *, low: float | None = None, high: float | None = None) -> float:
    """A finite float within [low, high], or a clear error."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise SelectorInputError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(out) or (low is not None and out < low) or (high is not None and out > high):
        raise SelectorInputError(f"{name} = {value!r} is out of range [{low}, {high}]")
    return out
