"""What counts as a prompt's text: more than whitespace.

The one check every front door that takes a prompt applies (the API's bodies, the CLI's JSONL
lines, imported outcomes): whitespace alone gives the predictor nothing to read, so its qualities
would be anything, and an outcome stored for it would teach a refit nothing.
"""
from __future__ import annotations

BLANK_PROMPT = "the prompt is empty or only whitespace"


def is_blank(prompt: str) -> bool:
    """Whether `prompt` is empty or only whitespace."""
    return not prompt.strip()


def not_blank(prompt: str) -> str:
    """`prompt` itself; ValueError (BLANK_PROMPT) when it is empty or only whitespace."""
    if is_blank(prompt):
        raise ValueError(BLANK_PROMPT)
    return prompt
