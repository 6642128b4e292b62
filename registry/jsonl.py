"""JSON Lines input: one JSON object per line, every bad line reported with where it is.

Probe results (registry.probes), prompt files (predictor.prompt_file, for `pickwise predict`,
`plan` and `universe`) and probe responses (`pickwise probe score`) are all JSONL files a
user writes by hand or with a script. The line-level checks (UTF-8, valid JSON, an object)
live here once so every reader words them the same way and reports all bad lines at once
rather than stopping at the first. This is the lowest layer that reads such files, so the
others build on it.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

MAX_REPORTED_ERRORS = 20


def read_input(path: str | Path) -> bytes:
    """The bytes of `path`, or of stdin for '-'; OSError when it cannot be read."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


class RepeatedKey(ValueError):
    """A JSON object names a key twice: json.loads would keep the last value without a word."""

    def __init__(self, key: str):
        super().__init__(f"key {key!r} appears twice in one JSON object; give each key once")
        self.key = key


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """json.loads' `object_pairs_hook` that refuses a repeated key (RepeatedKey), as the registry
    refuses a repeated YAML key and the HTTP API a repeated body key."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise RepeatedKey(key)
        seen.add(key)
    return dict(pairs)


class NestedTooDeeply(ValueError):
    """JSON nested deeper than `json.loads` goes (about 1,000 levels): a RecursionError there."""

    msg = "nested too deeply"  # as json.JSONDecodeError.msg: what is wrong, without where

    def __init__(self) -> None:
        super().__init__(self.msg)


def loads_unique(text: str | bytes):
    """`json.loads` refusing a repeated key (RepeatedKey); JSON nested too deeply is NestedTooDeeply, a
    ValueError a caller reports like bad syntax, not a RecursionError that ends the whole file."""
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except RecursionError:
        raise NestedTooDeeply() from None


def json_object_lines(
    data: bytes | str, where: Callable[[int], str], problems: list[str], shape: str = ""
) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of `data` that holds one JSON object.

    Lines that are not UTF-8, not JSON or not an object are skipped, and a message starting
    with `where(line number)` is appended to `problems` for each. `shape` (e.g.
    '{"prompt_id": ..., "score": ...}') tells the user what an object should look like.
    Only '\\n' ends a line: a raw U+2028 inside a JSON string is not a line break.
    """
    expected = f"expected an object {shape}" if shape else "expected a JSON object"
    data = data.removeprefix(b"\xef\xbb\xbf" if isinstance(data, bytes) else "\ufeff")  # a UTF-8 BOM (Windows editors)
    newline = b"\n" if isinstance(data, bytes) else "\n"
    for number, chunk in enumerate(data.split(newline), start=1):
        if not chunk.strip():
            continue
        try:
            record = loads_unique(chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk)
        except RepeatedKey as exc:
            problems.append(f"{where(number)}: {exc}")
            continue
        except NestedTooDeeply as exc:
            problems.append(f"{where(number)}: not valid JSON ({exc.msg})")
            continue
        except UnicodeDecodeError as exc:
            problems.append(f"{where(number)}: not UTF-8 text (byte {exc.start})")
            continue
        except json.JSONDecodeError as exc:
            problems.append(f"{where(number)}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where(number)}: {expected}, got {type(record).__name__}")
            continue
        surrogate = lone_surrogate(record)
        if surrogate:
            problems.append(f"{where(number)}: {surrogate}")
            continue
        yield number, record


def lone_surrogate(value) -> str | None:
    """What is wrong when a parsed JSON or YAML value holds a lone surrogate ("\\ud800"), else None.

    Both formats allow the escape, but it is no character: the tokenizer raised a TypeError on it,
    and a response or a terminal quoting it cannot encode it as UTF-8 (the service answered 500).
    Each list or mapping is looked at once: YAML aliases share them, and a few hundred bytes of
    aliases of aliases would otherwise be walked billions of times. A loop, not recursion: JSON
    nested nearly as deep as its reader allows would exceed Python's stack here."""
    pending, seen = [value], set()
    while pending:
        part = pending.pop()
        if isinstance(part, str):
            try:
                part.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"holds a lone surrogate ({ascii(part[exc.start])}), which is not text"
        elif isinstance(part, (dict, list)) and id(part) not in seen:
            seen.add(id(part))
            parts = [p for pair in part.items() for p in pair] if isinstance(part, dict) else part
            pending.extend(reversed(parts))  # first part first, as written
    return None


def listed_problems(problems: list[str], limit: int = MAX_REPORTED_ERRORS) -> str:
    """The first `limit` problems, one per indented line, then how many were left out."""
    more = len(problems) - limit
    shown = problems[:limit] + ([f"... and {more} more"] if more > 0 else [])
    return "  " + "\n  ".join(shown)
