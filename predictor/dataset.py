"""Joins several routing tables into one multi-label training set over a shared model vocabulary.

Tables name the same model differently (`Mixtral-8x7B-Instruct-v0.1` in MMLU-Pro,
`mistralai/mixtral-8x7b-chat` in RouterBench); the registry's names and aliases map them
to one canonical model, so its results in every table train one model vector.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pickwise.predictor.data import RoutingTable, split_labels


def canonical_name(snapshot, table_model: str) -> str:
    """The registry's canonical name for a table's model name (the table name if unregistered)."""
    if snapshot is not None and table_model in snapshot:
        return snapshot.get(table_model).name
    return table_model


@dataclass
class TrainingSet:
    prompts: list[str]
    prompt_ids: np.ndarray  # [N] str
    table: np.ndarray  # [N] table name per row
    labels: np.ndarray  # [N, M] float32 in [0, 1], NaN where the model has no result
    model_names: list[str]  # canonical names, column order of `labels`
    aliases: dict[str, str]  # every table model name -> canonical name
    split: np.ndarray  # [N] "train" | "val" | "test"
    task: np.ndarray | None = None  # [N] "table/task": the task label, qualified by its table
    subtask: np.ndarray | None = None  # [N] "table/task/subtask" (= task where the table has no finer label)

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def model_tables(self) -> dict[str, list[str]]:
        """Canonical model -> the tables in which it has at least one result.

        Recorded in the artifact so a cold-start fit can take its prior from the models that
        were measured on the same benchmark as the new model's probe results (see
        predictor.coldstart).
        """
        has = ~np.isnan(self.labels)
        return {m: sorted({str(t) for t in np.unique(self.table[has[:, j]])}) for j, m in enumerate(self.model_names)}


def build_training_set(
    tables: list[RoutingTable],
    snapshot=None,
    exclude_models: tuple[str, ...] = (),
    seed: int = 0,
    val_frac: float = 0.1,
    test_frac: float = 0.2,
) -> TrainingSet:
    """Stack tables row-wise; columns are the union of canonical models minus `exclude_models`.

    `exclude_models` (table or canonical names) are dropped entirely, which is how the
    cold-start experiment trains without some models and registers them afterwards.
    """
    excluded = {canonical_name(snapshot, m) for m in exclude_models}
    aliases: dict[str, str] = {}
    for table in tables:
        for m in table.model_names:
            aliases[m] = canonical_name(snapshot, m)
    model_names = sorted({c for c in aliases.values() if c not in excluded})
    column = {name: j for j, name in enumerate(model_names)}
    blocks, prompts, ids, names, splits, tasks, subtasks = [], [], [], [], [], [], []
    for table in tables:
        block = np.full((len(table), len(model_names)), np.nan, dtype=np.float32)
        for j, m in enumerate(table.model_names):
            c = aliases[m]
            if c in column:
                # fmax keeps a result when a table lists the same model twice under two names
                block[:, column[c]] = np.fmax(block[:, column[c]], table.quality[:, j])
        blocks.append(block)
        prompts.extend(table.prompts)
        ids.append(table.prompt_ids)
        names.append(np.full(len(table), table.name, dtype=object))
        task, subtask = task_labels(table)
        tasks.append(task)
        subtasks.append(subtask)
        splits.append(split_labels(table.prompts, seed=seed, val_frac=val_frac, test_frac=test_frac))
    labels = np.concatenate(blocks) if blocks else np.zeros((0, len(model_names)), dtype=np.float32)
    if np.any((labels < 0) | (labels > 1)):
        raise ValueError("quality labels must lie in [0, 1]")
    return TrainingSet(
        prompts=prompts,
        prompt_ids=np.concatenate(ids) if ids else np.array([], dtype=object),
        table=np.concatenate(names) if names else np.array([], dtype=object),
        labels=labels,
        model_names=model_names,
        aliases={m: c for m, c in aliases.items() if c in column},
        split=np.concatenate(splits) if splits else np.array([], dtype=object),
        task=np.concatenate(tasks) if tasks else np.array([], dtype=object),
        subtask=np.concatenate(subtasks) if subtasks else np.array([], dtype=object),
    )


def task_labels(table: RoutingTable) -> tuple[np.ndarray, np.ndarray]:
    """Table-qualified task and subtask labels per row.

    Qualified by the table because the same task name ("mmlu") means different prompt
    formats and model sets in different tables; rows without a task fall back to the table.
    """
    task = np.array([f"{table.name}/{t}" if t else table.name for t in table.task], dtype=object)
    if table.subtask is None:
        return task, task.copy()
    return task, np.array([f"{t}/{s}" if s else t for t, s in zip(task, table.subtask)], dtype=object)
