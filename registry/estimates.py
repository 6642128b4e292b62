"""Pre-call cost and latency of sending a prompt to a model, from the registry alone.

The model is deliberately simple because the inputs (list prices, typical
answer length, a few latency figures) are all that is known before the call:

    cost    = prompt_tokens * input_per_million / 1e6
            + output_tokens * output_per_million / 1e6 + per_request
    latency = ttft_ms + output_tokens / output_tokens_per_s * 1000

`output_tokens` defaults to the model's `expected_output_tokens`; the predictor's per-prompt
estimate (pickwise.predictor.lengths) is passed in where it has one. Token counts may be arrays
(one figure per prompt); scalars give plain numbers. Prefill time
is taken as part of `ttft_ms` (no separate per-prompt-token term): for the
prompt lengths routers see, it is small next to time to first token.
"""
from __future__ import annotations

import numpy as np

from pickwise.registry.schema import ModelSpec


def _output_tokens(spec: ModelSpec, output_tokens):
    out = spec.expected_output_tokens if output_tokens is None else output_tokens
    if np.any(np.asarray(out) < 0):
        raise ValueError(f"output_tokens must be >= 0, got {np.min(out)}")
    return out


def _check_prompt(prompt_tokens) -> None:
    if np.any(np.asarray(prompt_tokens) < 0):
        raise ValueError(f"prompt_tokens must be >= 0, got {np.min(prompt_tokens)}")


def estimate_cost_usd(spec: ModelSpec, prompt_tokens: int, output_tokens: int | None = None) -> float:
    """USD for one call: input and output tokens at the model's list prices plus its per-request fee."""
    _check_prompt(prompt_tokens)
    out = _output_tokens(spec, output_tokens)
    price = spec.pricing
    return prompt_tokens * price.input_per_million / 1e6 + out * price.output_per_million / 1e6 + price.per_request


def estimate_latency_ms(spec: ModelSpec, prompt_tokens: int, output_tokens: int | None = None) -> float:
    """Milliseconds until the answer is complete: time to first token plus decode time."""
    _check_prompt(prompt_tokens)
    out = _output_tokens(spec, output_tokens)
    return spec.latency.ttft_ms + out / spec.latency.output_tokens_per_s * 1000.0


def output_room(spec: ModelSpec, prompt_tokens: int) -> int:
    """The longest answer the model takes after a prompt: its max_output_tokens, or what the context
    window leaves (below 0 when the prompt alone overflows it)."""
    _check_prompt(prompt_tokens)
    room = np.minimum(spec.max_output_tokens, spec.context_window - np.asarray(prompt_tokens))
    return int(room) if np.ndim(room) == 0 else room


def fits_context(spec: ModelSpec, prompt_tokens: int, output_tokens: int | None = None) -> bool:
    """Whether prompt plus answer fit the context window and the answer fits max_output_tokens."""
    fits = np.asarray(_output_tokens(spec, output_tokens)) <= output_room(spec, prompt_tokens)
    return bool(fits) if np.ndim(fits) == 0 else fits
