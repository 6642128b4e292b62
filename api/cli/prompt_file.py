"""Prompt files: JSONL with one {"id", "prompt"} object per line, checked line by line.

`pickwise predict` reads them as they are; `pickwise plan` and `pickwise universe` read the same
format plus their own fields ("quality", "prompt_tokens") through the `parse` hook, so the shared checks (UTF-8, JSON, an object, a usable id, a string
prompt that is more than whitespace, no repeated id) are written once and every problem in the file is reported at once,
each with the file and line it comes from.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pickwise.errors import PickwiseError
from pickwise.registry.jsonl import json_object_lines, listed_problems, read_input
from pickwise.registry.prompt_text import not_blank


class PromptFileError(PickwiseError, ValueError):
    """A prompt file that cannot be read or has bad lines; `problems` are 'file:line: what' each."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class PromptRecord:
    """One line: its number, the id (ints become strings), the prompt if any, and the whole object
    (for readers that take more fields than these)."""

    line: int
    id: str
    prompt: str | None
    fields: dict[str, Any]


def _record(number: int, obj: dict[str, Any], require_prompt: bool) -> PromptRecord:
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise ValueError(f"missing or invalid 'id' (a string or integer), got {rid!r:.60}")
    prompt = obj.get("prompt")
    if prompt is None and require_prompt:
        raise ValueError("missing 'prompt' (a string)")
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"'prompt' must be a string, got {type(prompt).__name__}")
    if prompt is not None:
        try:
            not_blank(prompt)
        except ValueError as exc:
            raise ValueError(f"'prompt': {exc}") from None
    return PromptRecord(number, str(rid), prompt, obj)


def read_prompt_file(
    path: str | Path,
    *,
    require_prompt: bool = True,
    parse: Callable[[PromptRecord], Any] | None = None,
    progress: bool = False,
) -> list:
    """Every non-blank line of `path` ('-' reads stdin), as PromptRecords or as `parse` makes them.

    `require_prompt=False` lets lines omit "prompt" (a reader whose own fields can stand in for
    it checks that in `parse`). `parse` raises ValueError for a bad line; its message is reported
    with the file and line like the built-in checks. Raises PromptFileError listing every bad line.
    """
    source = "<stdin>" if str(path) == "-" else str(path)
    try:
        raw = read_input(path)
    except OSError as exc:
        raise PromptFileError(f"{source}: cannot read input ({exc.strerror})") from None
    problems: list[str] = []
    items: list = []
    first_line: dict[str, int] = {}
    lines = json_object_lines(raw, lambda n: f"{source}:{n}", problems, '{"id": ..., "prompt": ...}')
    # total: the lines a final newline ends (blank ones included, so a bound); the bar only on a
    # terminal (disable=None): piped stderr kept its first frame, glued to the error message after it
    total = raw.count(b"\n") + (not raw.endswith(b"\n"))
    for number, obj in tqdm(lines, desc="reading", unit="line", total=total,
                            disable=None if progress else True, leave=False):
        try:
            record = _record(number, obj, require_prompt)
            if record.id in first_line:
                raise ValueError(f"duplicate id {record.id!r} (first on line {first_line[record.id]})")
            first_line[record.id] = number
            items.append(record if parse is None else parse(record))
        except ValueError as exc:
            problems.append(f"{source}:{number}: {exc}")
    if problems:
        raise PromptFileError(f"{source}: bad input lines:\n" + listed_problems(problems), problems)
    return items
