"""Regenerate the shipped probe set (registry/probes/probe_set.jsonl) from the tables in shared/data.

    python -m tools.build_probe_set [--data ../shared/data] [--out registry/probes/probe_set.jsonl] [--check]

The probe set is what a new model is run on so the predictor can place it among the
models it was trained on (issue 6). Three things make a probe prompt useful:

- It was a *training* prompt (`predictor.data.split_labels(prompts, seed=0) == "train"`).
  The evaluation scores the "test" rows, so a probe prompt there would leak held-out
  labels into a cold-start model's vector.
- It tells models apart, without skewing what they look like. Items that every model gets
  right (or wrong) say nothing about a new model and are left out (0 < mean score < 1), and
  an item needs results for at least 80% of the table's models. Within that, items are a
  *random* sample stratified by difficulty (equal shares of the terciles of the mean
  score), not the most discriminating ones: picking items by their correlation with the
  models' accuracy selects Guttman-like items that every strong model gets right, so a
  new model's probe accuracy stops reflecting its real accuracy and its cold-start vector
  comes out far too strong or too weak. A representative
  sample keeps the probe accuracy an unbiased estimate and lets the predictor's prompt
  vectors, not the item selection, explain item difficulty.
- Together the items cover the ground: quotas per table and per task (proportional to the
  task's share of candidates, with a floor per task).

MMLU-Pro gets the largest quota on purpose: it is the only table with reference answers
(so `pickwise probe score` can grade a new model there), it has the most models (25,
so its discrimination estimates are the most reliable), and the cold-start benchmark
holds out MMLU-Pro models, whose probe results can only come from MMLU-Pro prompts.

The same question asked twice (within or across tables: MMLU questions appear in three
of them) is kept once, by its question stem. Everything is deterministic (`--seed`).
This script may import `predictor` because it is a build tool; the registry package at
run time only reads the JSONL file it writes.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pickwise.predictor.data import load_table, question_stem, split_labels
from pickwise.registry.probes.choices import option_letters
from pickwise.registry.probes.probe_set import DEFAULT_PROBE_SET_PATH, ProbeEntry

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data"

# table file stem -> number of probe prompts taken from it (400 in all; see the module docstring).
TABLE_QUOTAS = {
    "mmlu_pro_25models": 220,
    "mmlu57_gsm8k_9models": 70,
    "llmrouter_dcrouter_9models": 70,
    "routerbench_subset_arc_mbpp_winogrande_11models": 40,
}
TASK_FLOOR = 3  # every task of a table gets at least this many prompts (if it has that many candidates)
MIN_MODEL_COVERAGE = 0.8  # share of the table's models that must have a result on a candidate
MEAN_SCORE_RANGE = (0.0, 1.0)  # exclusive: at either end every model agrees
MAX_PROMPT_TOKENS = 2048  # keep probing a new model cheap
DIFFICULTY_BANDS = 3
REFERENCE_COLUMNS = ("answer",)  # the only reference-answer column any table has (MMLU-Pro)


@dataclass(frozen=True)
class Candidate:
    """One training prompt that may enter the probe set, with its item statistics."""

    row: int
    prompt_id: str
    task: str
    stem: str
    mean_score: float
    discrimination: float  # point-biserial correlation with the models' overall accuracy


def item_statistics(quality: np.ndarray, min_coverage: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per item: enough models observed?, mean score, correlation of its scores with model ability.

    `quality` is [items, models] with NaN for missing results. A model's ability is its
    mean score over the given items; the correlation is taken over the models that have
    a result on the item (NaN where fewer than 3 or where the item's scores are constant).
    """
    observed = ~np.isnan(quality)
    n_models = quality.shape[1]
    covered = observed.sum(axis=1) >= math.ceil(min_coverage * n_models)
    ability = np.nanmean(quality, axis=0)
    mean = np.full(len(quality), np.nan)
    mean[covered] = np.nanmean(quality[covered], axis=1)
    corr = np.full(len(quality), np.nan)
    for i in np.flatnonzero(covered):
        mask = observed[i]
        x, a = quality[i, mask], ability[mask]
        if mask.sum() >= 3 and x.std() > 0 and a.std() > 0:
            corr[i] = float(np.corrcoef(x, a)[0, 1])
    return covered, mean, corr


def allocate(quota: int, available: dict[str, int], floor: int) -> dict[str, int]:
    """Split `quota` over tasks: a floor each, the rest proportional to availability (largest remainder).

    No task gets more than it has; what a small task cannot take goes to the others.
    """
    alloc = {t: min(floor, n) for t, n in available.items()}
    remaining = quota - sum(alloc.values())
    if remaining < 0:
        raise ValueError(f"quota {quota} is smaller than the floors of {len(available)} tasks")
    while remaining > 0:
        room = {t: available[t] - alloc[t] for t in available if available[t] > alloc[t]}
        if not room:
            break
        total = sum(available[t] for t in room)
        shares = {t: remaining * available[t] / total for t in room}
        give = {t: min(room[t], int(shares[t])) for t in room}
        if sum(give.values()) == 0:  # hand out the remainder one by one, largest fraction first
            order = sorted(room, key=lambda t: (-(shares[t] - int(shares[t])), t))
            give = {t: 1 for t in order[:remaining]}
        for t, g in give.items():
            alloc[t] += g
        remaining -= sum(give.values())
    return alloc


def pick_spread(candidates: list[Candidate], k: int, rng: np.random.Generator) -> list[Candidate]:
    """k candidates drawn at random, in turn from each difficulty band (terciles of the mean score).

    Random within bands (a seeded shuffle), so the sample stays representative of the
    task's difficulty; see the module docstring for why not the most discriminating items.
    """
    if k <= 0 or not candidates:
        return []
    shuffled = [candidates[i] for i in rng.permutation(len(candidates))]
    means = np.array([c.mean_score for c in shuffled])
    edges = np.quantile(means, np.linspace(0, 1, DIFFICULTY_BANDS + 1)[1:-1])
    bands: list[list[Candidate]] = [[] for _ in range(DIFFICULTY_BANDS)]
    for c in shuffled:
        bands[int(np.searchsorted(edges, c.mean_score, side="right"))].append(c)
    queues = bands
    picked: list[Candidate] = []
    while len(picked) < k and any(queues):
        for queue in queues:
            if queue and len(picked) < k:
                picked.append(queue.pop(0))
    return picked


def table_candidates(table, seen_stems: set[str]) -> list[Candidate]:
    """The table's training prompts that qualify as probe items (see the module docstring)."""
    train_rows = np.flatnonzero(split_labels(table.prompts, seed=0) == "train")
    covered, mean, corr = item_statistics(table.quality[train_rows], MIN_MODEL_COVERAGE)
    low, high = MEAN_SCORE_RANGE
    out, stems = [], set()
    for k, i in enumerate(train_rows):
        if not covered[k] or not (low < mean[k] < high):
            continue
        if table.in_tokens[i] > MAX_PROMPT_TOKENS or not table.prompts[i].strip():
            continue
        stem = question_stem(table.prompts[i])
        if stem in seen_stems or stem in stems:
            continue
        stems.add(stem)
        out.append(Candidate(int(i), str(table.prompt_ids[i]), str(table.task[i]), stem, float(mean[k]), float(corr[k])))
    return out


def reference_answers(path: Path) -> dict[str, str]:
    """prompt_id -> reference answer, from the table's reference column if it has one (else empty)."""
    columns = pq.read_schema(path).names
    column = next((c for c in REFERENCE_COLUMNS if c in columns), None)
    if column is None:
        return {}
    frame = pd.read_parquet(path, columns=["prompt_id", column]).dropna()
    return {str(p): str(a).strip() for p, a in zip(frame["prompt_id"], frame[column])}


def build_entries(data_dir: Path, seed: int = 0) -> list[ProbeEntry]:
    """The probe set, table by table in TABLE_QUOTAS order, tasks sorted by name."""
    rng = np.random.default_rng(seed)
    seen_stems: set[str] = set()
    entries: list[ProbeEntry] = []
    for stem, quota in TABLE_QUOTAS.items():
        path = data_dir / f"{stem}.parquet"
        table = load_table(path)
        references = reference_answers(path)
        candidates = table_candidates(table, seen_stems)
        by_task: dict[str, list[Candidate]] = {}
        for c in candidates:
            by_task.setdefault(c.task, []).append(c)
        alloc = allocate(quota, {t: len(v) for t, v in sorted(by_task.items())}, TASK_FLOOR)
        for task in sorted(by_task):
            for c in sorted(pick_spread(by_task[task], alloc[task], rng), key=lambda c: c.row):
                prompt = table.prompts[c.row]
                choices = option_letters(prompt)
                reference = references.get(c.prompt_id)
                if reference is not None and choices is not None and reference not in choices:
                    raise ValueError(f"{path}: {c.prompt_id}: reference {reference!r} is not one of the options {choices}")
                entries.append(ProbeEntry(prompt_id=c.prompt_id, table=stem, task=task, prompt=prompt,
                                          reference=reference, choices=choices))
                seen_stems.add(c.stem)
    return entries


def render(entries: list[ProbeEntry]) -> str:
    return "".join(json.dumps(e.model_dump(), ensure_ascii=False) + "\n" for e in entries)


def summary(entries: list[ProbeEntry]) -> str:
    counts: dict[tuple[str, str], int] = {}
    for e in entries:
        counts[(e.table, e.task)] = counts.get((e.table, e.task), 0) + 1
    lines = [f"{len(entries)} probe prompts, {sum(e.reference is not None for e in entries)} with a reference answer"]
    for table in TABLE_QUOTAS:
        tasks = {t: n for (tb, t), n in counts.items() if tb == table}
        parts = ", ".join(f"{t or '-'} {n}" for t, n in sorted(tasks.items()))
        lines.append(f"  {table}: {sum(tasks.values())} ({parts})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of the routing tables")
    parser.add_argument("--out", type=Path, default=DEFAULT_PROBE_SET_PATH, help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="fail if --out differs from a fresh build")
    args = parser.parse_args(argv)
    entries = build_entries(args.data, args.seed)
    text = render(entries)
    print(summary(entries), file=sys.stderr)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m tools.build_probe_set", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date", file=sys.stderr)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
