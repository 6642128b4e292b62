"""A chat request's cap on its answer: `max_completion_tokens`, or `max_tokens` (OpenAI's older name).

Routing reads it twice (`request_candidates`): the cost and latency estimates assume an answer no
longer than the cap, and a model fits only when the conversation plus the whole cap fit its
context window and the cap its max_output_tokens, since an OpenAI-compatible server refuses
anything else with a 400 that the next model would not avoid (a client error does not fall back).
The refusals the upstream would give are answered here instead, before any upstream is called:
both fields set (OpenAI's own rule), a named model the cap does not fit, and a routed request
that no model it could go to takes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from pickwise.api.errors import InvalidParameter, RequestFieldError, quoted
from pickwise.registry import ModelSpec, output_room

FIELDS = ("max_completion_tokens", "max_tokens")


class OutputCap(NamedTuple):
    field: str  # the body field that set it, for messages
    tokens: int


def output_cap(body: dict[str, Any]) -> OutputCap | None:
    """The cap a chat request sets, or None; a null field counts as unset."""
    given = [f for f in FIELDS if body.get(f) is not None]
    if len(given) > 1:  # OpenAI's answer to both, word for word, so callers see what they would there
        raise InvalidParameter("Setting 'max_tokens' and 'max_completion_tokens' at the same time is not "
                               "supported.", param="max_tokens")
    if not given:
        return None
    value = body[given[0]]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestFieldError(given[0], f"must be a whole number of tokens, at least 1 (got {repr(value)[:40]})")
    return OutputCap(given[0], value)


def _limits(spec: ModelSpec) -> str:
    return f"context window {spec.context_window:,}, max_output_tokens {spec.max_output_tokens:,}"


def check_named(spec: ModelSpec, cap: OutputCap, prompt_tokens: int) -> None:
    """InvalidParameter when `cap` and the conversation's `prompt_tokens` do not fit the named model."""
    room = output_room(spec, prompt_tokens)
    if cap.tokens <= room:
        return
    if room <= 0:
        raise InvalidParameter(f"the conversation's {prompt_tokens:,} prompt tokens leave no room for an answer in "
                               f"model {quoted(spec.name)} ({_limits(spec)})", param=cap.field)
    raise InvalidParameter(f"{cap.field} {cap.tokens:,} is more than model {quoted(spec.name)} can answer after the "
                           f"conversation's {prompt_tokens:,} prompt tokens: at most {room:,} ({_limits(spec)})",
                           param=cap.field)


def fits_none(pool: Sequence[ModelSpec], blocking: dict[str, list[str]], cap: OutputCap,
              prompt_tokens: int) -> InvalidParameter | None:
    """The 400 for a routed request whose cap fits none of the models in `pool` (every one ruled out by
    'context window' or 'max output tokens'); None when some model takes it (any other refusal is the selector's 409)."""
    if not pool or any(not {"context window", "max output tokens"} & set(blocking.get(s.name, ())) for s in pool):
        return None
    best = max(pool, key=lambda s: output_room(s, prompt_tokens))
    room = output_room(best, prompt_tokens)
    if room <= 0:
        return InvalidParameter(f"the conversation's {prompt_tokens:,} prompt tokens fill the context window of every "
                                f"model the gateway could route to (the largest: {quoted(best.name)}, "
                                f"{_limits(best)})", param=cap.field)
    return InvalidParameter(f"{cap.field} {cap.tokens:,} fits no model the gateway could route to after the "
                            f"conversation's {prompt_tokens:,} prompt tokens: the most any takes is {room:,} "
                            f"({quoted(best.name)}: {_limits(best)})", param=cap.field)
