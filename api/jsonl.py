"""Reading prompt JSONL files for the CLI (`predict`, `plan`, `universe`) with line-numbered errors."""
from __future__ import annotations

import contextlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from api.cli import CliError

MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class PromptLine:
    """One input line: an id, the prompt text, and optional precomputed qualities {model: p}."""

    line: int
    id: str
    prompt: str
    quality: dict[str, float] | None = None


def _parse(number: int, text: str, allow_quality: bool) -> PromptLine:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    rid = record.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise ValueError('field "id": expected a string')
    quality = record.get("quality") if allow_quality else None
    prompt = record.get("prompt")
    if quality is None and not isinstance(prompt, str):
        raise ValueError('field "prompt": expected a string' + (' (or give "quality")' if allow_quality else ""))
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError('field "prompt": expected a string')
    if quality is not None:
        if not isinstance(quality, dict) or not quality:
            raise ValueError('field "quality": expected a non-empty object {model: probability}')
        for model, p in quality.items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0.0 <= p <= 1.0:
                raise ValueError(f'field "quality.{model}": expected a number in [0, 1], got {p!r}')
        quality = {str(m): float(p) for m, p in quality.items()}
    return PromptLine(line=number, id=str(rid), prompt=prompt or "", quality=quality)


def read_prompt_lines(path: str, allow_quality: bool = False) -> list[PromptLine]:
    """Every non-blank line of `path` (or stdin for '-'); all problems reported at once, by line."""
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            raw = Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read input ({exc.strerror})") from exc
    lines, errors, seen = [], [], {}
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        if not chunk.strip():
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(f"{path}:{number}: not UTF-8 text (byte {exc.start})")
            continue
        try:
            item = _parse(number, text, allow_quality)
        except ValueError as exc:
            errors.append(f"{path}:{number}: {exc}")
            continue
        if item.id in seen:
            errors.append(f"{path}:{number}: duplicate id {item.id!r} (first on line {seen[item.id]})")
            continue
        seen[item.id] = number
        lines.append(item)
    if errors:
        more = len(errors) - MAX_REPORTED_ERRORS
        shown = errors[:MAX_REPORTED_ERRORS] + ([f"... and {more} more"] if more > 0 else [])
        raise CliError("bad input lines:\n  " + "\n  ".join(shown))
    return lines


@contextlib.contextmanager
def open_output(path: str):
    """stdout for '-', else a file written in full before it replaces the target."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        yield fh
    tmp.replace(target)
