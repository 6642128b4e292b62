"""A chat request's `n`: how many answers (choices) one call asks the upstream to write.

Each answer is billed for its own output tokens, the prompt once, so routing prices n answers
(`request_candidates`); they are written side by side, so latency is one answer's, and
`max_tokens` caps each answer, so the context-window fit is one answer's too.
"""
from __future__ import annotations

from typing import Any

from pickwise.api.errors import RequestFieldError

MAX_ANSWERS = 128  # OpenAI's own bound on n


def answer_count(body: dict[str, Any]) -> int:
    """The `n` a chat request sets (1 when absent or null); RequestFieldError (422 on `n`) when it is not
    a whole number from 1 to MAX_ANSWERS."""
    value = body.get("n")
    if value is None:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ANSWERS:
        raise RequestFieldError("n", f"must be a whole number of answers from 1 to {MAX_ANSWERS} "
                                     f"(got {repr(value)[:40]})")
    return value
