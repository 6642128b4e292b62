"""Reading the chosen letter out of a model's answer, and grading it against the reference."""
from __future__ import annotations

import pytest

from pickwise.registry.probes.choices import option_letters
from pickwise.registry.probes.grading import extract_choice, grade_response
from pickwise.registry.probes.probe_set import ProbeEntry

TEN = "ABCDEFGHIJ"


@pytest.mark.parametrize("response, expected", [
    ("C", "C"),
    ("  c  ", "C"),
    ("(C)", "C"),
    ("**D**", "D"),
    ("D. Structural", "D"),
    ("B) because the rest are wrong", "B"),
    ("The answer is (C)", "C"),
    ("the answer is C.", "C"),
    ("Answer: c) reduced pressure", "C"),
    ("answer: c", "C"),
    ("Final answer: **E**", "E"),
    ("The correct answer is: **F. foo**", "F"),
    ("Answer: option (D)", "D"),
    ("\\boxed{E}", "E"),
    ("The correct option is G", "G"),
    # chains of thought: the last explicit answer wins over letters discussed on the way
    ("I think A is wrong. B is too narrow. The answer is therefore H.", "H"),
    ("A is wrong and B is wrong, so the answer is (J). Earlier I considered (B).", "J"),
    ("The answer is B because option A fails", "B"),
    ("Answer: B\nThe answer is not C... wait, the answer is D", "D"),
    # articles and pronouns are not letters; the last real letter is
    ("I believe it is H", "H"),
    ("A good guess would be I", "I"),
    ("The answer is a tricky one, so (G)", "G"),
    # nothing usable
    ("None of these options are right", None),
    ("", None),
])
def test_extract_choice(response, expected):
    assert extract_choice(response, TEN) == expected


def test_only_valid_choices_count():
    assert extract_choice("The answer is E", "ABCD") is None
    assert extract_choice("Answer: K", TEN) is None
    assert extract_choice("The answer is E. Or maybe (B)", "ABCD") == "B"


def entry(reference, choices, prompt="Q?\nA. x\nB. y\nC. z\nD. w"):
    return ProbeEntry(prompt_id="p1", table="t", task="k", prompt=prompt, reference=reference, choices=choices)


def test_grade_response():
    graded = entry("C", "ABCD")
    assert graded.gradable
    assert grade_response(graded, "The answer is (C)") == 1.0
    assert grade_response(graded, "The answer is (B)") == 0.0
    assert grade_response(graded, "no idea") == 0.0  # an answer with no letter is a wrong answer
    assert grade_response(entry(None, "ABCD"), "C") is None  # no reference: cannot be graded here
    assert grade_response(entry(None, None, prompt="Who wrote Hamlet?"), "Shakespeare") is None


def test_reference_must_be_a_choice():
    with pytest.raises(ValueError, match="reference 'E' is not one of the choices 'ABCD'"):
        entry("E", "ABCD")


@pytest.mark.parametrize("prompt, letters", [
    ("Q?\nA. x\nB. y\nC. z\nD. w", "ABCD"),
    ("Q?\n(A) x\n(B) y\n(C) z", "ABC"),
    ("Q?\nA) home\nB) house\nAnswer:", "AB"),
    # few-shot: the examples' option blocks come first, the question's block is the last one
    ("Ex?\nA) a\nB) b\nC) c\nD) d\nAnswer:\nB\n\nQ?\nA) one\nB) two\nAnswer:", "AB"),
    ("Q with A. inline text and no options", None),
    ("Q?\nA. only one option", None),
    ("Q?\nA. x\nC. skipped B\nD. y", None),
])
def test_option_letters(prompt, letters):
    assert option_letters(prompt) == letters
