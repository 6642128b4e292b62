"""Grading a model's answer to a multiple-choice probe prompt: which letter did it choose?

Models answer in many styles ("C", "(C)", "Answer: c) ...", "The answer is **C**.",
a chain of thought ending in "so the answer is (C)", "\\boxed{C}"). The extraction goes
from the most to the least explicit signal and only accepts letters among the prompt's
options, so a stray "A" (the article) or "I" (the pronoun) is not taken for an answer
when something better is there.
"""
from __future__ import annotations

import re

from pickwise.registry.probes.probe_set import ProbeEntry

_LETTER_AFTER_CUE = r"\s*[(\[*\"'{]*\s*([A-Za-z])(?![A-Za-z0-9])"
# "answer is (C)", "Answer: c)", "final answer: option B", "\boxed{C}": the letter is group 1.
_ANSWER_CUE = re.compile(
    r"(?:\banswer\b(?:\s+is)?(?:\s*[:=])?\s*(?:\b(?:option|choice)\b)?|\\boxed\{)" + _LETTER_AFTER_CUE,
    re.IGNORECASE,
)
# "correct option is B", "choice C": weaker, since explanations also discuss options they reject.
_OPTION_CUE = re.compile(r"\b(?:option|choice)\b(?:\s+is)?(?:\s*[:=])?" + _LETTER_AFTER_CUE, re.IGNORECASE)
# a response that is just a letter, or starts with one set off like an option label ("C)", "(C)", "C.", "**C**")
_LEADING = re.compile(r"^\s*[(\[*\"']*\s*([A-Za-z])\s*(?:[)\].:*\"']|$)")
_BRACKETED = re.compile(r"[(\[]([A-Z])[)\]]")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")
_LOWERCASE_LETTER_ENDS = ")].:*,\"'"


def _accept(match: re.Match, choices: str) -> str | None:
    """The match's letter if it is a valid choice; lower-case only when set off like a label ("c)", "c.")."""
    letter = match.group(1)
    if letter.islower():
        after = match.string[match.end():match.end() + 1]
        if after and after not in _LOWERCASE_LETTER_ENDS and not after.isspace():
            return None
        if after.isspace() and match.string[match.end():].strip():
            return None  # "the answer is a good one": an article, not a letter
    letter = letter.upper()
    return letter if letter in choices else None


def _last(matches, choices: str) -> str | None:
    for match in reversed(list(matches)):
        letter = _accept(match, choices)
        if letter is not None:
            return letter
    return None


def _is_article_or_pronoun(match: re.Match) -> bool:
    """ "A" or "I" followed by a lower-case word reads as English, not as an option letter."""
    return match.group(1) in "AI" and re.match(r"\s+[a-z]", match.string[match.end():]) is not None


def extract_choice(response: str, choices: str) -> str | None:
    """The option letter the response chose (upper case, one of `choices`), or None if it names none."""
    letter = _last(_ANSWER_CUE.finditer(response), choices)
    if letter is None:
        letter = _last(_OPTION_CUE.finditer(response), choices)
    if letter is None:
        leading = _LEADING.match(response)
        letter = _accept(leading, choices) if leading else None
    if letter is None:
        letter = _last(_BRACKETED.finditer(response), choices)
    if letter is None:
        standalone = [m for m in _STANDALONE.finditer(response) if not _is_article_or_pronoun(m)]
        letter = _last(standalone, choices)
    return letter


def grade_response(entry: ProbeEntry, response: str) -> float | None:
    """1.0 if the response chose the reference letter, 0.0 otherwise (no letter found counts as wrong).

    None when the entry cannot be graded here: no reference answer or not multiple-choice.
    """
    if not entry.gradable:
        return None
    return 1.0 if extract_choice(response, entry.choices) == entry.reference else 0.0
