"""A team's logged outcomes in the long format (one row per prompt and model, as `pickwise outcomes
import` reads them) turned into a wide routing table, so `pickwise train --data` and `eval --data`
take them beside the public tables.

A prompt's quality for a model is the mean score of its rows (so is its cost and answer length);
its task is the rows' `tags.task` where they give one, else the table's name (one task). Rows that
keep only the prompt's hash cannot train an encoder: they are counted in `extra` and left out.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

MAX_PROBLEMS_SHOWN = 20


def is_long_format(path: Path) -> bool:
    """JSONL and CSV are always long; a parquet file is when it has `model` and `score` columns and no
    wide quality columns."""
    if path.suffix in (".jsonl", ".csv"):
        return True
    if path.suffix != ".parquet":
        return False
    import pyarrow.parquet as pq

    from pickwise.predictor.data import QUALITY_PREFIX

    names = pq.read_schema(path).names
    return {"model", "score"} <= set(names) and not any(n.startswith(QUALITY_PREFIX) for n in names)


def _means(cells: dict[tuple[int, int], list[float]], shape: tuple[int, int]) -> np.ndarray:
    out = np.full(shape, np.nan)
    for (i, j), values in cells.items():
        out[i, j] = float(np.mean(values))
    return out


def outcomes_table(path: str | Path, resolve_model: Callable[[str], str] | None = None):
    """The RoutingTable of a long-format file; ValueError naming every bad row (by line) or saying why
    nothing in it can train an encoder. `resolve_model` maps a logged name or alias to one name."""
    from pickwise.predictor.data import RoutingTable, file_sha256
    from pickwise.registry.outcomes import parse_file, prompt_sha256

    path = Path(path)
    good, bad = parse_file(path, resolve_model or (lambda name: name))
    if bad:
        more = f"\n  ... and {len(bad) - MAX_PROBLEMS_SHOWN} more" if len(bad) > MAX_PROBLEMS_SHOWN else ""
        raise ValueError(f"{path}: {len(bad)} bad row(s) in the long format:\n  "
                         + "\n  ".join(bad[:MAX_PROBLEMS_SHOWN]) + more)
    kept = [o for o in good if o.prompt is not None]
    if not good:
        raise ValueError(f"{path}: no outcome rows (expected one per prompt and model: prompt, model, score, ...)")
    if not kept:
        raise ValueError(f"{path}: none of its {len(good)} row(s) keeps the prompt's text (only its hash), "
                         "so none can train or evaluate an encoder")
    prompts = list(dict.fromkeys(o.prompt for o in kept))
    models = sorted({o.model for o in kept})
    row, col = {p: i for i, p in enumerate(prompts)}, {m: j for j, m in enumerate(models)}
    score: dict[tuple[int, int], list[float]] = {}
    cost: dict[tuple[int, int], list[float]] = {}
    tokens: dict[tuple[int, int], list[float]] = {}
    task = [""] * len(prompts)
    for o in kept:
        cell = (row[o.prompt], col[o.model])
        score.setdefault(cell, []).append(o.score)
        if o.cost_usd is not None:
            cost.setdefault(cell, []).append(o.cost_usd)
        if o.output_tokens is not None:
            tokens.setdefault(cell, []).append(float(o.output_tokens))
        named = (o.tags or {}).get("task")
        if isinstance(named, str) and named and not task[cell[0]]:
            task[cell[0]] = named
    shape = (len(prompts), len(models))
    return RoutingTable(
        name=path.stem, path=path, sha256=file_sha256(path),
        prompt_ids=np.array([prompt_sha256(p)[:16] for p in prompts], dtype=object),
        prompts=prompts, task=np.array(task, dtype=object), model_names=models,
        quality=_means(score, shape), cost=_means(cost, shape), in_tokens=np.full(len(prompts), np.nan),
        out_tokens=_means(tokens, shape) if tokens else None,
        extra={"format": "long", "rows": len(good), "hash_only_rows": len(good) - len(kept)},
    )
