"""Reading the answer options of a multiple-choice prompt: which letters may a model answer with?

Shared by the probe-set generator (to record `choices` per prompt) and by the answer
grader (to know which letters are valid). Few-shot prompts hold several option blocks,
one per worked example; the question actually asked is the last one, so its block wins.
"""
from __future__ import annotations

import re

# "A. text", "A) text", "(A) text" at the start of a line.
_OPTION_LINE = re.compile(r"^[ \t]*\(?([A-Z])[.)][ \t]+\S", re.MULTILINE)


def option_letters(prompt: str) -> str | None:
    """The letters of the prompt's last run of options ("ABCD"), or None if it has fewer than two.

    A run is a sequence of option lines lettered A, B, C, ... with no gap; a new "A"
    starts a new run, so the options of few-shot examples are never merged.
    """
    runs: list[str] = []
    for match in _OPTION_LINE.finditer(prompt):
        letter = match.group(1)
        if letter == "A":
            runs.append("A")
        elif runs and ord(letter) == ord(runs[-1][-1]) + 1:
            runs[-1] += letter
    runs = [r for r in runs if len(r) >= 2]
    return runs[-1] if runs else None
