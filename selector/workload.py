"""A prompt workload -> the (quality, cost, latency, allowed) matrices the batch planners take.

Each prompt has text and/or "quality": {model: p} with the caller's own scores; then the
predictor is skipped for it and models missing from the dict are not candidates for it.
Costs, latencies and context fit come from the registry (selector.costs). `build_workload`
turns rows into matrices for the service's plans (POST /v1/plan, `pickwise plan` and
`pickwise universe`), so every caller plans the same batch the same way.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pickwise.errors import PickwiseError
from pickwise.registry import ModelSpec, RegistrySnapshot, count_tokens_batch
from pickwise.selector.costs import batch_figures


class WorkloadError(PickwiseError, ValueError):
    """A bad workload file or line; the message names the file and line."""


@dataclass
class Workload:
    """N prompts x M candidate models: qualities, registry estimates and which pairs are allowed."""

    ids: list[str]
    specs: list[ModelSpec]
    quality: np.ndarray  # [N, M]; 0 where not allowed
    cost_usd: np.ndarray  # [N, M]
    latency_ms: np.ndarray  # [N, M]
    allowed: np.ndarray  # [N, M] bool: scored (given or predicted) and fits the context window
    predicted_lines: int = 0
    low_confidence: dict[str, str] = field(default_factory=dict)
    too_long: np.ndarray | None = None  # [N] bool: scored for some model, but fits none (context, max output)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def columns(self, keep: np.ndarray) -> Workload:
        """The workload over the models `keep` (a [M] bool mask) selects."""
        specs = [s for s, k in zip(self.specs, keep) if k]
        kept = {s.name for s in specs}
        return Workload(self.ids, specs, self.quality[:, keep], self.cost_usd[:, keep], self.latency_ms[:, keep],
                        self.allowed[:, keep], self.predicted_lines,
                        {n: why for n, why in self.low_confidence.items() if n in kept}, self.too_long)


@dataclass(frozen=True)
class WorkloadRow:
    """One prompt: its text (None when only qualities are given), its token count (None: count
    the text) and the given qualities by candidate column (None: ask the predictor)."""

    id: str
    prompt: str | None
    tokens: int | None
    quality: dict[int, float] | None


class ModelKeyError(PickwiseError, ValueError):
    """A {model: value} mapping names a model the registry does not know, or one model twice."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def canonical_names(snapshot: RegistrySnapshot, names: Iterable[str]) -> list[str]:
    """The registry name of each of `names` (names or aliases). ModelKeyError for an unknown name, and
    for a model named twice (the same name again, or its name and an alias): a repeated allow-list
    entry or mapping key would silently count once, or one value replace the other."""
    out: list[str] = []
    seen: dict[str, str] = {}  # canonical name -> the name that named it first
    for name in names:
        if name not in snapshot:
            raise ModelKeyError(name, f"unknown model '{name}'{snapshot.did_you_mean(name)} (not in the registry: "
                                      "see GET /v1/models or `pickwise models list`)")
        canonical = snapshot.get(name).name
        if canonical in seen:
            first = seen[canonical]
            raise ModelKeyError(name, f"'{name}' is given twice; give it once" if first == name else
                                f"'{name}' names the same model as '{first}' ({canonical}); give it once")
        seen[canonical] = name
        out.append(canonical)
    return out


def values_by_column(snapshot: RegistrySnapshot, column: dict[str, int], values: dict) -> dict[int, object]:
    """{candidate column: value} for {model name or alias: value}; models outside the candidates
    are skipped. ModelKeyError as `canonical_names` raises it."""
    return {column[canonical]: value for canonical, value in zip(canonical_names(snapshot, values), values.values())
            if canonical in column}


def build_workload(
    rows: Sequence[WorkloadRow],
    specs: Sequence[ModelSpec],
    score: Callable[[list[str]], np.ndarray],
    *,
    output_tokens: int | np.ndarray | None = None,
) -> Workload:
    """Matrices for `rows` x `specs`: given qualities where present, else `score(prompts)` ([k, M],
    called once with every prompt that needs it, not at all when none does); a pair is allowed
    when it was scored and the prompt plus answer fit the model's context window. `output_tokens`: one
    count, the registry's (None), or an [N, M] matrix of estimates, read after `score` has run."""
    n, m = len(rows), len(specs)
    quality = np.zeros((n, m))
    allowed = np.zeros((n, m), dtype=bool)
    for i, row in enumerate(rows):
        if row.quality:
            cols = np.fromiter(row.quality.keys(), dtype=np.intp, count=len(row.quality))
            quality[i, cols] = list(row.quality.values())
            allowed[i, cols] = True
    to_predict = [i for i, row in enumerate(rows) if row.quality is None]
    if to_predict:
        quality[to_predict] = score([rows[i].prompt for i in to_predict])
        allowed[to_predict] = True
    need_count = [i for i, row in enumerate(rows) if row.tokens is None]
    tokens = np.array([row.tokens or 0 for row in rows], dtype=np.int64)
    if need_count:
        tokens[need_count] = count_tokens_batch([rows[i].prompt for i in need_count])
    figures = batch_figures(specs, tokens, output_tokens)
    scored = allowed.any(axis=1)
    allowed &= figures.fits_context
    return Workload(
        ids=[row.id for row in rows], specs=list(specs), quality=np.where(allowed, quality, 0.0),
        cost_usd=figures.cost_usd, latency_ms=figures.latency_ms, allowed=allowed, predicted_lines=len(to_predict),
        too_long=scored & ~allowed.any(axis=1),
    )
