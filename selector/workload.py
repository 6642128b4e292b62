"""Reading a prompt workload (JSONL) into the matrices the planners need.

Each line is {"id", "prompt"} and may carry "quality": {model: p} with the caller's own scores;
then the predictor is skipped for that line and models missing from the dict are not
candidates for it. Costs, latencies and context fit come from the registry (selector.costs).
Every problem is reported with the file and line it comes from.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from registry import ModelSpec, RegistrySnapshot, UnknownModelError, count_tokens_batch
from selector.costs import batch_figures


class WorkloadError(ValueError):
    """A bad workload file or line; the message names the file and line."""


@dataclass
class Workload:
    """N prompts x M candidate models: qualities, registry estimates and which pairs are allowed."""

    ids: list[str]
    specs: list[ModelSpec]
    quality: np.ndarray  # [N, M]; 0 where not allowed
    cost_usd: np.ndarray  # [N, M]
    latency_ms: np.ndarray  # [N, M]
    allowed: np.ndarray  # [N, M] bool: scored (given or predicted) and fits the context window
    predicted_lines: int = 0
    low_confidence: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]


@dataclass
class _Line:
    id: str
    prompt: str | None
    tokens: int | None
    quality: dict[int, float] | None  # model column -> p


def candidate_models(snapshot: RegistrySnapshot, names: Sequence[str] | None) -> list[ModelSpec]:
    """Enabled registry models, or the named ones (names or aliases; each must exist and be enabled)."""
    if not names:
        specs = list(snapshot.enabled())
        if not specs:
            raise WorkloadError(f"registry {snapshot.directory} has no enabled models")
        return specs
    specs = []
    for name in names:
        try:
            spec = snapshot.get(name)
        except UnknownModelError as exc:
            raise WorkloadError(f"--models: {exc}") from None
        if not spec.enabled:
            raise WorkloadError(f"--models: model '{spec.name}' is disabled in the registry")
        if spec not in specs:
            specs.append(spec)
    return specs


def _parse_line(raw: str, where: str, snapshot: RegistrySnapshot, column: dict[str, int]) -> _Line:
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise WorkloadError(f"{where}: expected a JSON object with 'id' and 'prompt', got {type(obj).__name__}")
    if "id" not in obj or not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool):
        raise WorkloadError(f"{where}: missing or invalid 'id' (a string or integer)")
    prompt = obj.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise WorkloadError(f"{where}: 'prompt' must be a string")
    tokens = obj.get("prompt_tokens")
    if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0):
        raise WorkloadError(f"{where}: 'prompt_tokens' must be a non-negative integer")
    given = obj.get("quality")
    scores = None
    if given is not None:
        if not isinstance(given, dict) or not given:
            raise WorkloadError(f"{where}: 'quality' must be a non-empty object {{model: probability}}")
        scores = {}
        for name, p in given.items():
            if name not in snapshot:
                raise WorkloadError(f"{where}: unknown model '{name}' in 'quality'")
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not math.isfinite(p) or not 0 <= p <= 1:
                raise WorkloadError(f"{where}: quality of '{name}' is {p!r}; expected a number in [0, 1]")
            j = column.get(snapshot.get(name).name)
            if j is not None:  # models outside the candidate set are ignored
                scores[j] = float(p)
    if prompt is None and (scores is None or tokens is None):
        raise WorkloadError(f"{where}: needs 'prompt' (or both 'quality' and 'prompt_tokens')")
    return _Line(str(obj["id"]), prompt, tokens, scores)


def read_lines(path: str | Path, snapshot: RegistrySnapshot, specs: Sequence[ModelSpec], progress: bool = True) -> list[_Line]:
    """Parse and check every line of a JSONL workload."""
    column = {s.name: j for j, s in enumerate(specs)}
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"cannot read {path}: {exc}") from None
    lines, seen = [], {}
    rows = text.splitlines()
    for number, raw in enumerate(tqdm(rows, desc="reading", unit="line", disable=not progress, leave=False), 1):
        if not raw.strip():
            continue
        line = _parse_line(raw, f"{path}:{number}", snapshot, column)
        if line.id in seen:
            raise WorkloadError(f"{path}:{number}: duplicate id {line.id!r} (first on line {seen[line.id]})")
        seen[line.id] = number
        lines.append(line)
    if not lines:
        raise WorkloadError(f"{path}: no prompts")
    return lines


def load_workload(
    path: str | Path,
    snapshot: RegistrySnapshot,
    specs: Sequence[ModelSpec],
    predictor_factory: Callable[[], object],
    *,
    output_tokens: int | None = None,
    progress: bool = True,
) -> Workload:
    """Read the file, score lines without given qualities with the predictor, add registry figures."""
    lines = read_lines(path, snapshot, specs, progress)
    n, m = len(lines), len(specs)
    quality = np.zeros((n, m))
    allowed = np.zeros((n, m), dtype=bool)
    for i, line in enumerate(lines):
        if line.quality is not None:
            cols = np.fromiter(line.quality.keys(), dtype=np.intp, count=len(line.quality))
            quality[i, cols] = list(line.quality.values())
            allowed[i, cols] = True
    to_predict = [i for i, line in enumerate(lines) if line.quality is None]
    low_confidence: dict[str, str] = {}
    if to_predict:
        predictor = predictor_factory()
        scores = predictor.predict([lines[i].prompt for i in to_predict], list(specs), snapshot=snapshot, progress=progress)
        quality[to_predict] = scores
        allowed[to_predict] = True
        low_confidence = predictor.low_confidence(list(specs), snapshot=snapshot)
    need_count = [i for i, line in enumerate(lines) if line.tokens is None]
    tokens = np.array([line.tokens or 0 for line in lines], dtype=np.int64)
    if need_count:
        tokens[need_count] = count_tokens_batch([lines[i].prompt for i in need_count])
    figures = batch_figures(specs, tokens, output_tokens)
    allowed &= figures.fits_context
    return Workload(
        ids=[line.id for line in lines], specs=list(specs), quality=np.where(allowed, quality, 0.0),
        cost_usd=figures.cost_usd, latency_ms=figures.latency_ms, allowed=allowed,
        predicted_lines=len(to_predict), low_confidence=low_confidence,
    )
