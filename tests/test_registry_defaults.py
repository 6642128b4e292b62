"""The shipped registry loads, and holds every model of the four priced tables under its table names."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pickwise.predictor.data import PRICED_TABLES as TABLES
from pickwise.registry import default_registry_dir, load_registry
from tools.build_defaults import main as build_main

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA.resolve()}")


def test_shipped_registry_is_valid():
    snap = load_registry(default_registry_dir())
    assert len(snap.models) >= 40
    assert all(m.latency.estimated for m in snap.models)
    mixtral = snap.get("mistralai/mixtral-8x7b-chat")
    assert mixtral is snap.get("Mixtral-8x7B-Instruct-v0.1") is snap.get("mistralai/Mixtral-8x7B-Instruct-v0.1")
    assert snap.get("Mistral-7B-v0.1") is snap.get("mistralai/Mistral-7B-v0.1")
    assert snap.get("Meta-Llama-3-8B") is snap.get("meta-llama/Meta-Llama-3-8B")
    assert snap.get("Yi-34B") is not snap.get("zero-one-ai/Yi-34B-Chat")
    assert snap.get("gpt-4-1106-preview").pricing.input_per_million == pytest.approx(10.0)


@needs_data
def test_every_priced_table_model_is_registered():
    snap = load_registry(default_registry_dir())
    for key, stem in TABLES.items():
        columns = [c[3:] for c in pq.read_schema(DATA / f"{stem}.parquet").names if c.startswith("q__")]
        assert columns, stem
        missing = [c for c in columns if c not in snap]
        assert not missing, f"{stem}: not in the shipped registry: {missing}"
        assert all(key in snap.get(c).tags for c in columns)


@needs_data
def test_shipped_yaml_is_what_the_generator_writes(capsys):
    assert build_main(["--data", str(DATA), "--out", str(default_registry_dir()), "--check"]) == 0, capsys.readouterr().out
