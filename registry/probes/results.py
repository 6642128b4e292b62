"""Reading and checking a model's probe results (`probe.results` in a registry YAML file).

Results come as a CSV file (`prompt_id,score` header), a JSONL file (one
`{"prompt_id": ..., "score": ...}` per line), both at a path relative to the YAML
file, or inline as a list. The predictor fits a new model's vector from them, so
every result must be a score in [0, 1] on a prompt of the shipped probe set, each
prompt at most once, and there must be enough of them (MIN_PROBE_RESULTS) for the
fit to say more than its prior. Every problem is reported with the YAML file, the
model, the field `probe.results` and the results file's line (or the inline row).

An optional `output_tokens` column (key) gives the answer's length, from which the
predictor fits the model's output-length vector. A row may give a length without a
score (an answer no grader could score): it counts for the length fit only. Files
without the column read as before.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pickwise.errors import PickwiseError
from pickwise.registry.errors import RegistryError, RegistryIssue, display_path
from pickwise.registry.jsonl import json_object_lines
from pickwise.registry.probes.probe_set import load_probe_set, probe_ids
from pickwise.registry.schema import MAX_TOKENS, Probe

MIN_PROBE_RESULTS = 50
MAX_LISTED = 5  # unknown ids / bad rows quoted in one message before "... and N more"
MAX_ROW_ERRORS = 10
RESULT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FIELD = "probe.results"


@dataclass(frozen=True)
class ResultRow:
    """One probe result and where it was written (`file:line`, or `results[i]` for inline rows)."""

    where: str
    prompt_id: str
    score: float | None  # None: a length-only row
    output_tokens: int | None = None


@dataclass(frozen=True)
class ProbeEvidence:
    """A model's validated probe results: what the quality fit and the length fit read."""

    rows: tuple[ResultRow, ...]

    @property
    def scores(self) -> dict[str, float]:
        return {r.prompt_id: r.score for r in self.rows if r.score is not None}

    @property
    def lengths(self) -> dict[str, int]:
        return {r.prompt_id: r.output_tokens for r in self.rows if r.output_tokens is not None}

    def inline_rows(self) -> list[dict[str, Any]]:
        """The rows as inline YAML results: keys only for what each row gives."""
        return [{"prompt_id": r.prompt_id, **({"score": r.score} if r.score is not None else {}),
                 **({"output_tokens": r.output_tokens} if r.output_tokens is not None else {})} for r in self.rows]


class ResultsFormatError(PickwiseError, ValueError):
    """A results file that cannot be read as results at all, or rows that are not results (`.problems`)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _score(value: Any, text_allowed: bool) -> float:
    """A score in [0, 1] from a CSV cell (text) or a JSON value (a number, never a string); ValueError if not."""
    kinds = (int, float, str) if text_allowed else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"score {value!r} is not a number")
    try:
        score = float(value)
    except ValueError:
        raise ValueError(f"score {value!r} is not a number") from None
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise ValueError(f"score {value!r} is outside [0, 1]")
    return score


def parse_output_tokens(value: Any, text_allowed: bool = False) -> int | None:
    """A whole number of tokens >= 0 from a CSV cell (digits) or a JSON integer; None when absent."""
    if value is None or (text_allowed and isinstance(value, str) and not value.strip()):
        return None
    if text_allowed and isinstance(value, str) and value.strip().isdigit():
        tokens = int(value.strip())
    elif not text_allowed and isinstance(value, int) and not isinstance(value, bool):
        tokens = value
    else:
        raise ValueError(f"output_tokens {value!r} is not a whole number of tokens")
    if not 0 <= tokens <= MAX_TOKENS:
        raise ValueError(f"output_tokens {value!r} is outside [0, {MAX_TOKENS:,}]")
    return tokens


def _row(where: str, record: dict, text_allowed: bool) -> ResultRow:
    """One row: a score unless the row gives only a length (then an empty / absent score is allowed)."""
    prompt_id = _prompt_id(record.get("prompt_id"))
    tokens = parse_output_tokens(record.get("output_tokens"), text_allowed)
    raw = record.get("score")
    blank = raw is None or (text_allowed and isinstance(raw, str) and not raw.strip())
    score = None if blank and tokens is not None else _score(raw, text_allowed)
    return ResultRow(where, prompt_id, score, tokens)


def _prompt_id(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"prompt_id {value!r} is not a non-empty string")
    return value.strip()


def _csv_rows(text: str, name: str) -> tuple[list[ResultRow], list[str]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("prompt_id", "score") if c not in header]
    if missing:
        raise ResultsFormatError([
            f"{name}:1: header {','.join(header) or '(empty)'!r} lacks column(s) {', '.join(missing)}"
            " (expected a 'prompt_id,score' header)"
        ])
    reader.fieldnames = header
    rows, problems = [], []
    for record in reader:
        where = f"{name}:{reader.line_num}"
        if None in record:  # more cells than header columns
            problems.append(f"{where}: {len(header) + len(record[None])} cells for {len(header)} header columns")
            continue
        try:
            rows.append(_row(where, record, text_allowed=True))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return rows, problems


def _jsonl_rows(text: str, name: str) -> tuple[list[ResultRow], list[str]]:
    rows, problems = [], []
    shape = '{"prompt_id": ..., "score": ...}'
    for number, record in json_object_lines(text, lambda n: f"{name}:{n}", problems, shape):
        where = f"{name}:{number}"
        needed = ("prompt_id",) if record.get("output_tokens") is not None else ("prompt_id", "score")
        missing = [k for k in needed if k not in record]
        if missing:
            problems.append(f"{where}: missing key(s) {', '.join(missing)}")
            continue
        try:
            rows.append(_row(where, record, text_allowed=False))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return rows, problems


_READERS: dict[str, Callable[[str, str], tuple[list[ResultRow], list[str]]]] = {"csv": _csv_rows, "jsonl": _jsonl_rows}


def read_results_file(path: Path, name: str | None = None) -> list[ResultRow]:
    """Every row of a CSV/JSONL results file; ResultsFormatError listing every unreadable row.

    `name` is how messages call the file (default: its path); the registry passes the
    path as written in the YAML file, which the message already names.
    """
    name = name or display_path(path)
    fmt = RESULT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ResultsFormatError([
            f"{name}: unsupported results format {path.suffix or '(no extension)'!r}:"
            " expected .csv (prompt_id,score header) or .jsonl ({\"prompt_id\", \"score\"} per line)"
        ])
    if not path.is_file():
        raise ResultsFormatError([
            f"{name}: results file not found at {display_path(path)} (paths are relative to the YAML file's directory)"
        ])
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ResultsFormatError([f"{name}: cannot read results file ({exc.strerror})"]) from None
    except UnicodeDecodeError as exc:
        raise ResultsFormatError([f"{name}: not UTF-8 text (byte {exc.start})"]) from None
    if not text.strip():
        raise ResultsFormatError([f"{name}: results file is empty"])
    rows, problems = _READERS[fmt](text, name)
    if problems:
        raise ResultsFormatError(problems)
    return rows


def _listed(items: list[str]) -> str:
    more = len(items) - MAX_LISTED
    return ", ".join(items[:MAX_LISTED]) + (f", ... and {more} more" if more > 0 else "")


def check_results(rows: list[ResultRow], known_ids: frozenset[str], set_size: int, model: str = "",
                  max_output_tokens: int | None = None) -> list[str]:
    """Problems with a model's results as a whole: unknown ids, duplicates, too few results, and answer
    lengths above the model's `max_output_tokens` (no call answered that long, as import and feedback
    say of an outcome, and the length fit would learn it)."""
    problems = []
    unknown = [f"{r.prompt_id!r:.60} ({r.where})" for r in rows if r.prompt_id not in known_ids]
    if unknown:
        problems.append(
            f"{len(unknown)} prompt id(s) are not in the probe set: {_listed(unknown)}"
            " (`pickwise probe export` lists the probe prompts)"
        )
    first: dict[str, str] = {}
    duplicates = []
    for r in rows:
        if r.prompt_id in first:
            duplicates.append(f"{r.prompt_id!r:.60} ({first[r.prompt_id]} and {r.where})")
        else:
            first[r.prompt_id] = r.where
    if duplicates:
        problems.append(f"duplicate prompt id(s): {_listed(duplicates)}")
    scored = sum(r.score is not None for r in rows)
    if not problems and scored < MIN_PROBE_RESULTS:
        problems.append(
            f"only {scored} result(s)"
            + (f" with a score ({len(rows) - scored} give only a length)" if scored < len(rows) else "")
            + f": at least {MIN_PROBE_RESULTS} of the {set_size} probe prompts are needed"
            " (or drop `results` and give `benchmark_score` or `similar_to` as a prior)"
        )
    if max_output_tokens is not None:
        over = [f"{r.output_tokens:,} ({r.where})" for r in rows
                if r.output_tokens is not None and r.output_tokens > max_output_tokens]
        if over:
            problems.append(f"{len(over)} answer length(s) above {model}'s max_output_tokens "
                            f"({max_output_tokens:,}): {_listed(over)}")
    return problems


def _rows(probe: Probe, yaml_path: Path) -> list[ResultRow]:
    if isinstance(probe.results, str):
        target = Path(probe.results).expanduser()
        return read_results_file(target if target.is_absolute() else yaml_path.parent / target, probe.results)
    return [ResultRow(f"results[{i}]", r.prompt_id, r.score, r.output_tokens) for i, r in enumerate(probe.results)]


def parse_probe(probe: Probe, yaml_path: Path, model: str, max_output_tokens: int | None = None) -> ProbeEvidence | None:
    """The model's validated probe results (scores and answer lengths, none above `max_output_tokens`),
    or None when it gives only a prior.

    Raises RegistryError with one issue per problem, each naming `yaml_path`, `model`
    and the field `probe.results`.
    """
    def issues(problems: list[str], field: str = FIELD) -> RegistryError:
        return RegistryError([RegistryIssue(p, file=yaml_path, model=model, field=field) for p in problems])

    if probe.results is None:
        if probe.benchmark_score is None and probe.similar_to is None:
            raise issues(["the probe section is empty: give results, benchmark_score or similar_to"], "probe")
        return None
    try:
        rows = _rows(probe, yaml_path)
    except ResultsFormatError as exc:
        more = len(exc.problems) - MAX_ROW_ERRORS
        raise issues(exc.problems[:MAX_ROW_ERRORS] + ([f"... and {more} more bad rows"] if more > 0 else [])) from None
    problems = check_results(rows, probe_ids(), len(load_probe_set()), model, max_output_tokens)
    if problems:
        raise issues(problems)
    return ProbeEvidence(tuple(rows))


def write_results(out, rows: list[tuple[str, float | None, int | None]]) -> None:
    """Write (prompt_id, score, output_tokens) rows as a results CSV; the output_tokens column only
    when some row has a length, so graded-only results keep the plain `prompt_id,score` form."""
    with_lengths = any(tokens is not None for _, _, tokens in rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("prompt_id", "score", "output_tokens") if with_lengths else ("prompt_id", "score"))
    for pid, score, tokens in rows:
        cells = [pid, "" if score is None else f"{score:g}"]
        writer.writerow(cells + (["" if tokens is None else str(tokens)] if with_lengths else []))
