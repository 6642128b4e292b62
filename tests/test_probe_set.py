"""The shipped probe set: size, unique ids, references, spread over tables and tasks, train rows only."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pickwise.registry.probes.probe_set import (
    DEFAULT_PROBE_SET_PATH,
    ProbeSetError,
    load_probe_set,
    probe_ids,
    probe_index,
    probe_set_version,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")
ENTRIES = load_probe_set()


def test_size_and_unique_ids():
    assert 200 <= len(ENTRIES) <= 600
    ids = [e.prompt_id for e in ENTRIES]
    assert len(set(ids)) == len(ids) and probe_ids() == frozenset(ids) and set(probe_index()) == set(ids)


def test_loaded_once_and_versioned_by_content(tmp_path):
    assert load_probe_set() is load_probe_set()
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(DEFAULT_PROBE_SET_PATH.read_bytes())
    assert probe_set_version(copy) == probe_set_version() and len(probe_set_version()) == 16
    copy.write_bytes(DEFAULT_PROBE_SET_PATH.read_bytes()[:-200].rsplit(b"\n", 1)[0] + b"\n")
    assert probe_set_version(copy) != probe_set_version()


def test_spread_over_tables_and_tasks():
    tables = Counter(e.table for e in ENTRIES)
    assert len(tables) == 4 and min(tables.values()) >= 30
    tasks = Counter((e.table, e.task) for e in ENTRIES)
    assert len(tasks) >= 30 and min(tasks.values()) >= 3
    assert max(tasks.values()) <= 0.1 * len(ENTRIES) or tasks.most_common(1)[0][0][1] == "mmlu"


def test_mmlu_pro_entries_are_gradable_and_others_have_no_reference():
    gradable = [e for e in ENTRIES if e.gradable]
    assert len(gradable) >= 200  # enough for a new model to be registered from `probe score` alone
    assert all(e.table == "mmlu_pro_25models" for e in gradable)
    assert all(e.reference is None for e in ENTRIES if e.table != "mmlu_pro_25models")


def test_malformed_files_are_named_with_their_line(tmp_path):
    good = json.dumps(ENTRIES[0].model_dump())
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n" + json.dumps({**ENTRIES[1].model_dump(), "choices": "abc"}) + "\n")
    with pytest.raises(ProbeSetError, match=r"bad.jsonl:2: not a probe entry"):
        load_probe_set(bad)
    bad.write_text(good + "\n\n" + good + "\n")
    with pytest.raises(ProbeSetError, match=r"bad.jsonl:3: duplicate prompt_id .* \(first on line 1\)"):
        load_probe_set(bad)
    with pytest.raises(ProbeSetError, match="cannot read the probe set"):
        load_probe_set(tmp_path / "missing.jsonl")


@needs_data
def test_ids_and_prompts_come_from_the_train_split_of_their_tables():
    from pickwise.predictor.data import load_table, split_labels

    for table_name in {e.table for e in ENTRIES}:
        table = load_table(DATA / f"{table_name}.parquet")
        labels = split_labels(table.prompts, seed=0)
        row = {pid: i for i, pid in enumerate(table.prompt_ids)}
        for e in (e for e in ENTRIES if e.table == table_name):
            i = row[e.prompt_id]
            assert labels[i] == "train", e.prompt_id
            assert table.prompts[i] == e.prompt and str(table.task[i]) == e.task


@needs_data
def test_items_discriminate_between_models():
    """No probe item is answered alike by every model; most have results for every model."""
    import numpy as np

    from pickwise.predictor.data import load_table

    for table_name in {e.table for e in ENTRIES}:
        table = load_table(DATA / f"{table_name}.parquet")
        row = {pid: i for i, pid in enumerate(table.prompt_ids)}
        quality = table.quality[[row[e.prompt_id] for e in ENTRIES if e.table == table_name]]
        assert np.all(np.nanstd(quality, axis=1) > 0)
        assert np.mean(np.isnan(quality)) <= 0.2


@needs_data
def test_mmlu_pro_references_match_the_table():
    import pandas as pd

    frame = pd.read_parquet(DATA / "mmlu_pro_25models.parquet", columns=["prompt_id", "answer"])
    answer = dict(zip(frame["prompt_id"], frame["answer"]))
    assert all(e.reference == answer[e.prompt_id] for e in ENTRIES if e.table == "mmlu_pro_25models")


def test_task_allocation_has_floors_caps_and_sums_to_the_quota():
    from tools.build_probe_set import allocate

    alloc = allocate(40, {"big": 1000, "mid": 100, "tiny": 2, "small": 10}, floor=3)
    assert sum(alloc.values()) == 40 and alloc["tiny"] == 2 and alloc["small"] >= 3
    assert alloc["big"] > alloc["mid"] > alloc["small"]
    assert allocate(10, {"a": 4, "b": 4}, floor=3) == {"a": 4, "b": 4}  # cannot exceed what exists


@needs_data
def test_shipped_file_is_what_the_generator_builds():
    from tools.build_probe_set import build_entries, render

    assert render(build_entries(DATA)) == DEFAULT_PROBE_SET_PATH.read_text(encoding="utf-8")


@needs_data
def test_probe_accuracy_is_representative_of_each_model():
    """A model's accuracy on the probe items tracks its accuracy on the table (no Guttman skew)."""
    import numpy as np

    from pickwise.predictor.data import load_table, split_labels

    table = load_table(DATA / "mmlu_pro_25models.parquet")
    row = {pid: i for i, pid in enumerate(table.prompt_ids)}
    probe = [row[e.prompt_id] for e in ENTRIES if e.table == "mmlu_pro_25models"]
    train = split_labels(table.prompts, seed=0) == "train"
    gap = np.nanmean(table.quality[probe], axis=0) - np.nanmean(table.quality[train], axis=0)
    assert np.max(np.abs(gap)) < 0.12
