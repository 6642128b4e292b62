"""Routing tables: per-prompt x per-model quality and cost, read from ../shared/data parquet files.

A table is kept wide (prompts x models) because both training (masked multi-label loss) and
evaluation (routers sweep over models per prompt) work on whole rows. Missing results stay NaN
and are masked downstream, never imputed here.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

QUALITY_PREFIX = "q__"
COST_PREFIXES = ("cost__", "cost_in_only__")
OUT_TOKENS_PREFIX = "out_tokens__"
# The task/domain column differs per table; the first one present is used.
TASK_COLUMNS = ("category", "benchmark", "task", "dataset", "subject")
# A finer task split inside the task column, where a table has one (MMLU-Pro's source
# collection, MMLU-57's subject); the first present that is not the task column is used.
SUBTASK_COLUMNS = ("src", "subject")
PROMPT_COLUMNS = ("prompt", "instruction")
SPLITS = ("train", "val", "test")
# The four tables that carry prices, by short name: the default registry and predictor are built from them.
PRICED_TABLES = {
    "mmlu_pro": "mmlu_pro_25models",
    "routerbench": "routerbench_subset_arc_mbpp_winogrande_11models",
    "mmlu57": "mmlu57_gsm8k_9models",
    "llmrouter": "llmrouter_dcrouter_9models",
}


def default_data_dir() -> Path:
    """`../shared/data` beside the checkout: where the tables live (never copied into the repo)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class RoutingTable:
    """One benchmark table in wide form. Arrays are row-aligned with `prompt_ids`."""

    name: str
    path: Path
    sha256: str
    prompt_ids: np.ndarray  # [N] str
    prompts: list[str]
    task: np.ndarray  # [N] str ("" where the table has no task column)
    model_names: list[str]  # the table's own names (column suffixes)
    quality: np.ndarray  # [N, M] float, NaN = no result
    cost: np.ndarray  # [N, M] realised USD (input-only for LLMRouter), NaN = unknown
    in_tokens: np.ndarray  # [N] prompt tokens (cl100k_base, as shipped)
    out_tokens: np.ndarray | None  # [N, M] or None where the table has none
    cost_is_input_only: bool = False
    extra: dict = field(default_factory=dict)
    subtask: np.ndarray | None = None  # [N] str, the finer task label, or None where the table has none

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def observed(self) -> np.ndarray:
        """[N, M] bool: which (prompt, model) pairs have a result."""
        return ~np.isnan(self.quality)

    def subset(self, rows: np.ndarray) -> RoutingTable:
        """The same table restricted to `rows` (bool mask or indices)."""
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return RoutingTable(
            name=self.name,
            path=self.path,
            sha256=self.sha256,
            prompt_ids=self.prompt_ids[idx],
            prompts=[self.prompts[i] for i in idx],
            task=self.task[idx],
            model_names=list(self.model_names),
            quality=self.quality[idx],
            cost=self.cost[idx],
            in_tokens=self.in_tokens[idx],
            out_tokens=None if self.out_tokens is None else self.out_tokens[idx],
            cost_is_input_only=self.cost_is_input_only,
            extra=dict(self.extra),
            subtask=None if self.subtask is None else self.subtask[idx],
        )


def load_table(path: str | Path, resolve_model=None) -> RoutingTable:
    """Read one routing table: a wide `*.parquet` one, or logged outcomes in the long format
    (predictor.outcome_table; `resolve_model` maps their model names and aliases to one name).
    Raises ValueError naming the file and what is wrong with it."""
    from pickwise.predictor.outcome_table import is_long_format, outcomes_table

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data table")
    if is_long_format(path):
        return outcomes_table(path, resolve_model)
    frame = pd.read_parquet(path)
    prompt_col = next((c for c in PROMPT_COLUMNS if c in frame.columns), None)
    if prompt_col is None or "prompt_id" not in frame.columns:
        raise ValueError(f"{path}: expected columns 'prompt_id' and one of {PROMPT_COLUMNS}")
    models = [c[len(QUALITY_PREFIX):] for c in frame.columns if c.startswith(QUALITY_PREFIX)]
    if not models:
        raise ValueError(f"{path}: no quality columns ('{QUALITY_PREFIX}<model>')")
    quality = frame[[QUALITY_PREFIX + m for m in models]].to_numpy(dtype=np.float64)
    bad = ~np.isnan(quality) & ((quality < 0) | (quality > 1))  # a 5.0 "quality" made eval's oracle lose to the prior
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{path}: column '{QUALITY_PREFIX}{models[col]}' has {quality[row, col]:g} at row {row} "
                         f"(prompt_id {frame['prompt_id'].iloc[row]!r}); qualities must lie in [0, 1] "
                         f"({int(bad.sum())} such cell(s))")
    cost = np.full_like(quality, np.nan)
    input_only = False
    for j, m in enumerate(models):
        for prefix in COST_PREFIXES:
            if prefix + m in frame.columns:
                cost[:, j] = frame[prefix + m].to_numpy(dtype=np.float64)
                input_only = input_only or prefix == "cost_in_only__"
                break
    out_cols = [OUT_TOKENS_PREFIX + m for m in models]
    out_tokens = (
        frame[out_cols].to_numpy(dtype=np.float64) if all(c in frame.columns for c in out_cols) else None
    )
    task_col = next((c for c in TASK_COLUMNS if c in frame.columns), None)
    task = (
        frame[task_col].fillna("").astype(str).to_numpy()
        if task_col
        else np.full(len(frame), "", dtype=object)
    )
    subtask_col = next((c for c in SUBTASK_COLUMNS if c in frame.columns and c != task_col), None)
    subtask = frame[subtask_col].fillna("").astype(str).to_numpy() if subtask_col else None
    in_tokens = (
        frame["in_tokens"].to_numpy(dtype=np.float64)
        if "in_tokens" in frame.columns
        else np.full(len(frame), np.nan)
    )
    return RoutingTable(
        name=path.name.removesuffix(".parquet"),
        path=path,
        sha256=file_sha256(path),
        prompt_ids=frame["prompt_id"].astype(str).to_numpy(),
        prompts=frame[prompt_col].fillna("").astype(str).tolist(),
        task=task,
        model_names=models,
        quality=quality,
        cost=cost,
        in_tokens=in_tokens,
        out_tokens=out_tokens,
        cost_is_input_only=input_only,
        extra={"task_column": task_col, "subtask_column": subtask_col},
        subtask=subtask,
    )


_WS = re.compile(r"\s+")
_OPTIONS = re.compile(r"\n\s*(?:\(?a[).:]|options:)", re.IGNORECASE)


def question_stem(prompt: str) -> str:
    """The grouping key for splitting: the normalised question text, without few-shot examples or options.

    Several tables hold the same question more than once (re-phrased option lists, other
    few-shot prefixes), and few-shot prompts share long identical prefixes. The stem is the
    last substantial paragraph (the question actually asked) cut before its answer options,
    so every copy of a question lands on one side of the split.
    """
    paragraphs = [p for p in re.split(r"\n\s*\n", prompt.strip()) if len(p.strip()) >= 20]
    text = paragraphs[-1] if paragraphs else prompt
    match = _OPTIONS.search(text)
    if match and match.start() >= 20:
        text = text[: match.start()]
    return _WS.sub(" ", text.strip().lower())[:300]


def split_labels(prompts: list[str], seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.2) -> np.ndarray:
    """Deterministic train/val/test label per prompt, by hashing its question stem with `seed`.

    Hashing (rather than shuffling) makes the split reproducible from the text alone and
    stable when rows are added, so an artifact's recorded split can always be re-checked.
    """
    labels = np.empty(len(prompts), dtype=object)
    for i, prompt in enumerate(prompts):
        h = hashlib.sha1(f"{seed}:{question_stem(prompt)}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2**64
        labels[i] = "test" if u < test_frac else ("val" if u < test_frac + val_frac else "train")
    return labels
