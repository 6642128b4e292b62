"""`train --data` / `eval --data` take logged outcomes in the long format (issue #24)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pickwise.predictor.data import load_table
from pickwise.registry.outcomes import prompt_sha256
from tests.tables import synthetic_table


def long_rows(table, alias: dict[str, str] | None = None) -> list[dict]:
    """Every known cell of a wide table as a long-format row (some models under an alias)."""
    alias = alias or {}
    rows = []
    for i, prompt in enumerate(table.prompts):
        for j, model in enumerate(table.model_names):
            if not np.isnan(table.quality[i, j]):
                rows.append({"prompt": prompt, "model": alias.get(model, model), "score": float(table.quality[i, j]),
                             "cost_usd": float(table.cost[i, j]), "tags": {"task": str(table.task[i])}})
    return rows


def test_a_long_file_reads_as_the_wide_table_it_came_from(tmp_path):
    wide = synthetic_table()
    rows = long_rows(wide, alias={"gpt-4-1106-preview": "gpt4"})
    rows.append({"prompt_sha256": prompt_sha256("a secret prompt"), "model": "gpt4", "score": 1.0})
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    resolve = {"gpt4": "gpt-4-1106-preview"}
    table = load_table(path, lambda name: resolve.get(name, name))
    assert sorted(table.model_names) == sorted(wide.model_names)
    assert table.extra["hash_only_rows"] == 1 and table.extra["format"] == "long"
    order = [table.prompts.index(p) for p in wide.prompts]
    cols = [table.model_names.index(m) for m in wide.model_names]
    np.testing.assert_array_equal(table.quality[np.ix_(order, cols)], wide.quality)
    np.testing.assert_allclose(table.cost[np.ix_(order, cols)], np.where(np.isnan(wide.quality), np.nan, wide.cost))
    assert list(table.task[order]) == list(wide.task)
    # parquet in the same long format, and repeated rows averaged
    frame = pd.DataFrame([{**r, "tags": None} for r in rows[:2]] * 2 + [{**rows[0], "score": 0.0, "tags": None}])
    frame.to_parquet(tmp_path / "logs.parquet")
    again = load_table(tmp_path / "logs.parquet")
    assert again.quality[0, again.model_names.index(rows[0]["model"])] == pytest.approx(2 * rows[0]["score"] / 3)


def test_bad_rows_are_named_by_line_and_hash_only_files_are_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "model": "a", "score": 1.0}) + "\n"
                    + json.dumps({"prompt": "hi", "model": "a", "score": 1.5}) + "\n")
    with pytest.raises(ValueError, match=r"line 2: .*score"):
        load_table(path)
    hashed = tmp_path / "hashed.csv"
    hashed.write_text(f"prompt_sha256,model,score\n{prompt_sha256('x')},a,1\n")
    with pytest.raises(ValueError, match="keeps the prompt's text"):
        load_table(hashed)
    for name, text in (("empty.jsonl", ""), ("header.csv", "prompt,model,score\n")):
        (tmp_path / name).write_text(text)  # said "none of its 0 row(s) keeps the prompt's text (only its hash)"
        with pytest.raises(ValueError, match=f"{name}: no outcome rows"):
            load_table(tmp_path / name)


def test_the_encoder_trains_on_logged_outcomes(tmp_path):
    from pickwise.predictor.artifact import read_meta
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.model import ModelConfig
    from pickwise.predictor.train import TrainConfig, train

    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in long_rows(synthetic_table())))
    config = TrainConfig(model=ModelConfig(dim=8, hidden=16, lora_layers=1, lora_r=4, max_len=32), epochs=1,
                         epoch_fraction=1.0, batch_size=16)
    train([load_table(path)], tmp_path / "art", config, backbone=tiny_backbone(), progress=False)
    meta = read_meta(tmp_path / "art")
    assert sorted(meta["model_names"]) == sorted(synthetic_table().model_names)
