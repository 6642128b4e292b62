"""Checks on the numeric arrays the solvers receive.

Solvers silently produce nonsense on NaN or on a "probability" of 1.7, so every public entry
point runs its inputs through here first and gets an error that names the offending cell.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pickwise.selector.errors import SelectorInputError


def _where(index: tuple[int, ...], labels: Sequence[str] | None, vector_of: str = "model",
           prompts: Sequence[str] | None = None) -> str:
    """Human-readable position of a cell: 'prompt q-17, model gpt-4o' (models by `labels`, prompts by
    `prompts`, else by position); in a vector, 'model 2' or 'prompt q-3'."""
    def name(i: int, names: Sequence[str] | None) -> str:
        return str(names[i]) if names is not None else str(i)

    if len(index) == 1:
        return f"{vector_of} {name(index[0], prompts if vector_of == 'prompt' else labels)}"
    row, col = index
    return f"prompt {name(row, prompts)}, model {name(col, labels)}"


def _allowed(low: float | None, high: float | None) -> str:
    """What a valid value is, in words: 'a finite number in [0, 1]', 'a finite number >= 0', ..."""
    if low is not None and high is not None:
        return f"a finite number in [{low:g}, {high:g}]"
    if low is not None:
        return f"a finite number >= {low:g}"
    return f"a finite number <= {high:g}" if high is not None else "a finite number"


def as_matrix(
    values,
    name: str,
    *,
    shape: tuple[int, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    labels: Sequence[str] | None = None,
    vector_of: str = "model",
    prompts: Sequence[str] | None = None,
) -> np.ndarray:
    """Return `values` as a float64 array, rejecting wrong shapes, NaN/inf and values outside [low, high].

    Errors name models by `labels` and prompts by `prompts` (see `prompt_labels`); `vector_of` says
    what the entries of a 1-D array stand for ("model" or "prompt")."""
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
        raise SelectorInputError(
            f"{name} has an invalid value {float(arr[index]):g} at {_where(index, labels, vector_of, prompts)}"
            f" (each must be {_allowed(low, high)})"
            f"; {int(bad.sum())} invalid cell(s) in total"
        )
    return arr


def quality_matrix(values, *, labels: Sequence[str] | None = None, prompt_ids: Sequence[str] | None = None) -> np.ndarray:
    """A [prompts, models] matrix of predicted probabilities, each in [0, 1]."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise SelectorInputError(f"quality must be a 2-D [prompts, models] array, got shape {arr.shape}")
    return as_matrix(arr, "quality", low=0.0, high=1.0, labels=labels, prompts=prompt_labels(prompt_ids, len(arr)))


def per_prompt(values, name: str, n: int, *, low: float | None = None, high: float | None = None,
               prompts: Sequence[str] | None = None) -> np.ndarray:
    """Broadcast a scalar or a length-n vector to one value per prompt."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise SelectorInputError(f"{name} must be a scalar or have {n} entries (one per prompt), got shape {arr.shape}")
    return as_matrix(arr, name, low=low, high=high, vector_of="prompt", prompts=prompts)


def per_model_or_matrix(values, name: str, shape: tuple[int, int], *, labels: Sequence[str] | None = None,
                        prompts: Sequence[str] | None = None) -> np.ndarray:
    """A [models] vector (same for every prompt) or a full [prompts, models] matrix, as a matrix."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and arr.shape == (shape[1],):
        arr = np.broadcast_to(arr, shape)
    return as_matrix(arr, name, shape=shape, low=0.0, labels=labels, prompts=prompts)


def scalar(value, name: str, *, low: float | None = None, high: float | None = None) -> float:
    """A finite float within [low, high], or a clear error."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise SelectorInputError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(out) or (low is not None and out < low) or (high is not None and out > high):
        raise SelectorInputError(f"{name} must be {_allowed(low, high)}, got {out:g}")
    return out


def prompt_labels(prompt_ids: Sequence[str] | None, n: int) -> list[str]:
    """How errors name the n prompts: the caller's ids when given (what a user can find in their
    input), else their positions."""
    if prompt_ids is None:
        return [str(i) for i in range(n)]
    if len(prompt_ids) != n:
        raise SelectorInputError(f"{len(prompt_ids)} prompt ids for {n} prompts")
    return [str(p) for p in prompt_ids]
