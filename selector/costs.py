"""The thin layer between the registry and the solvers: cost, latency and context-fit matrices.

The solvers take plain arrays; this module fills them from ModelSpecs using the registry's own
estimators, so the pricing formula lives in one place (registry.estimates). Batches evaluate
the estimators once per distinct prompt length and model, then scatter the results.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pickwise.registry import ModelSpec, estimate_cost_usd, estimate_latency_ms, fits_context, output_room
from pickwise.selector.types import Candidate


@dataclass(frozen=True)
class Figures:
    """Per (prompt, model) pre-call estimates; all [N, M]."""

    cost_usd: np.ndarray
    latency_ms: np.ndarray
    fits_context: np.ndarray


def batch_figures(
    specs: Sequence[ModelSpec], prompt_tokens: Sequence[int], output_tokens: int | np.ndarray | None = None
) -> Figures:
    """Cost, latency and context fit for every prompt (by token count) and model; `output_tokens` is one
    count for all, the models' registry figures (None), or an [N, M] matrix of per-prompt estimates."""
    tokens = np.asarray(prompt_tokens, dtype=np.int64)
    if tokens.ndim != 1 or (tokens < 0).any():
        raise ValueError("prompt_tokens must be a 1-D sequence of non-negative integers")
    if isinstance(output_tokens, np.ndarray):
        if output_tokens.shape != (tokens.size, len(specs)):
            raise ValueError(f"output_tokens is {output_tokens.shape}, expected {(tokens.size, len(specs))}")
        out = np.rint(output_tokens)
        cost, latency = np.empty(out.shape), np.empty(out.shape)
        fits = np.empty(out.shape, dtype=bool)
        for j, spec in enumerate(specs):
            cost[:, j] = estimate_cost_usd(spec, tokens, out[:, j])
            latency[:, j] = estimate_latency_ms(spec, tokens, out[:, j])
            fits[:, j] = fits_context(spec, tokens, out[:, j])
        return Figures(cost, latency, fits)
    lengths, inverse = np.unique(tokens, return_inverse=True)
    m = len(specs)
    cost = np.empty((lengths.size, m))
    latency = np.empty((lengths.size, m))
    fits = np.empty((lengths.size, m), dtype=bool)
    for j, spec in enumerate(specs):
        for u, t in enumerate(lengths.tolist()):
            cost[u, j] = estimate_cost_usd(spec, t, output_tokens)
            latency[u, j] = estimate_latency_ms(spec, t, output_tokens)
            fits[u, j] = fits_context(spec, t, output_tokens)
    return Figures(cost[inverse], latency[inverse], fits[inverse])


def request_candidates(
    specs: Sequence[ModelSpec],
    prompt_tokens: int,
    quality: Sequence[float],
    *,
    low_confidence: Mapping[str, str] | None = None,
    output_tokens: int | Sequence[float] | None = None,
    support: Sequence[float] | None = None,
    evidence_rows: Sequence[float] | None = None,
    open_ended: bool = False,
    output_cap: int | None = None,
    answers: int = 1,
) -> list[Candidate]:
    """Candidates for one prompt: the predictor's quality per model (with the evidence behind it,
    where known: NaN means none measured) plus the registry's estimates. `output_tokens`: one count
    for all, None for each model's registry figure, or one estimate per model. `open_ended`: the
    prompt reads as open-ended, which base models are not routed by default. `output_cap`: the most
    the request lets a model answer (OpenAI's max_tokens): the estimates assume no longer an answer,
    and a model fits only when the prompt plus the whole cap fit it, as its server checks (`fits_context`
    for the window, `fits_output` for max_output_tokens). `answers`: how
    many answers one call writes (OpenAI's n): each is billed for its output and the prompt once, while
    they are written together, so latency, the fit and `output_tokens` are one answer's."""
    if len(quality) != len(specs):
        raise ValueError(f"{len(quality)} qualities for {len(specs)} models")
    if answers < 1:
        raise ValueError(f"answers must be >= 1, got {answers}")
    notes = low_confidence or {}

    def known(values, j):
        return None if values is None or not np.isfinite(values[j]) else float(values[j])

    def estimate(spec, j) -> int:
        if output_tokens is None:
            return spec.expected_output_tokens
        return int(output_tokens) if np.ndim(output_tokens) == 0 else int(round(float(output_tokens[j])))

    def tokens(spec, j) -> int:
        return estimate(spec, j) if output_cap is None else min(estimate(spec, j), output_cap)

    def reserved(spec, j) -> int:  # what the model must take: the answer, or the whole cap
        return tokens(spec, j) if output_cap is None else output_cap

    return [
        Candidate(
            name=spec.name,
            aliases=list(spec.aliases),
            quality=float(q),
            cost_usd=estimate_cost_usd(spec, prompt_tokens, answers * tokens(spec, j)),
            latency_ms=estimate_latency_ms(spec, prompt_tokens, tokens(spec, j)),
            # the two limits apart, so an exclusion names the one the answer breaks
            fits_context=prompt_tokens + reserved(spec, j) <= spec.context_window,
            fits_output=reserved(spec, j) <= spec.max_output_tokens,
            output_room=output_room(spec, prompt_tokens),
            output_tokens=tokens(spec, j),
            enabled=spec.enabled,
            low_confidence=notes.get(spec.name),
            support=known(support, j),
            evidence_rows=known(evidence_rows, j),
            open_ended_base=open_ended and spec.base_model,
            capabilities=list(spec.capabilities),
        )
        for j, (spec, q) in enumerate(zip(specs, quality))
    ]
