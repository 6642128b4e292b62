"""What counts as a prompt's text: more than whitespace and invisible format characters.

The one check every front door that takes a prompt applies (the API's bodies, the CLI's JSONL
lines, imported outcomes): whitespace alone gives the predictor nothing to read, so its qualities
would be anything, and an outcome stored for it would teach a refit nothing. Format characters
(Unicode category Cf: zero-width space and joiners, word joiner, byte-order mark) print nothing
either, so they count as whitespace here; a prompt that has text keeps them as it was sent.
"""
from __future__ import annotations

import unicodedata

BLANK_PROMPT = "the prompt is empty or only whitespace (zero-width and other format characters count as such)"


def is_blank(prompt: str) -> bool:
    """Whether `prompt` is empty or only whitespace and format (Cf) characters."""
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in prompt)


def not_blank(prompt: str) -> str:
    """`prompt` itself; ValueError (BLANK_PROMPT) when it is empty or only whitespace and format characters."""
    if is_blank(prompt):
        raise ValueError(BLANK_PROMPT)
    return prompt
