"""Shared fixtures: synthetic routing tables and a tiny trained predictor artifact.

The tiny artifact is trained for real (same code path as `pickwise train`) on a random
few-thousand-parameter BERT, so tests of everything above the predictor run in seconds
without the real backbone.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# every test runs against an empty user registry of its own, never the developer's ~/.pickwise
os.environ["PICKWISE_HOME"] = tempfile.mkdtemp(prefix="pickwise-home-")

from tests.api_support import client, copy_models  # noqa: E402
from tests.store_support import postgres_schema_url  # noqa: E402
from tests.tables import synthetic_table  # noqa: E402


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory) -> Path:
    """A predictor artifact trained (1 epoch) on a tiny random BERT and a synthetic table."""
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.model import ModelConfig
    from pickwise.predictor.train import TrainConfig, train

    out = tmp_path_factory.mktemp("artifact") / "tiny"
    config = TrainConfig(model=ModelConfig(dim=8, hidden=16, lora_layers=1, lora_r=4, max_len=32), epochs=2, epoch_fraction=1.0, batch_size=16)
    probe_ids = [f"synthetic-{i}" for i in range(0, 120, 2)]
    table = synthetic_table()
    texts = [table.prompts[int(i.split("-")[1])] for i in probe_ids]
    train([table], out, config, backbone=tiny_backbone(), progress=False, probe_prompts=(probe_ids, texts))
    return out


@pytest.fixture(scope="session")
def tiny_predictor(tiny_artifact):
    """The tiny artifact loaded (LoRA merged) on the same tiny random BERT."""
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    return load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone())


@pytest.fixture
def registry_dir(tmp_path):
    """A fresh copy of the few test models per test (writes never leak between tests)."""
    return copy_models(tmp_path / "registry")


@pytest.fixture
def api(registry_dir, tiny_predictor):
    """A client on the tiny predictor over `registry_dir`, admin token TOKEN."""
    with client(registry_dir, tiny_predictor) as c:
        yield c


@pytest.fixture(scope="session")
def length_artifact(tiny_artifact, tmp_path_factory):
    """The tiny artifact with a length model (a made population of trained length vectors) and probe vectors
    that separate the long-answer probe prompts from the others."""
    import shutil

    import numpy as np

    from pickwise.predictor.artifact import read_meta, write_probe_vectors
    from pickwise.predictor.lengths import FeatureMap, LengthModel, encoder_key, save_length_model
    from tests.length_support import LONG_TABLE, probe_kind_vectors

    art = tmp_path_factory.mktemp("lengths") / "art"
    shutil.copytree(tiny_artifact, art)
    names = read_meta(art)["model_names"]
    dim = read_meta(art)["model_config"]["dim"]
    rng = np.random.default_rng(3)
    model = LengthModel(names, rng.normal(scale=0.5, size=(len(names), dim)), rng.uniform(4, 7, size=len(names)),
                        np.zeros(len(names)), 0.09, FeatureMap(), np.tile([0.0, 12.0], (len(names), 1)),
                        model_tables={n: ["mmlu_pro_25models", LONG_TABLE] for n in names},
                        meta={"count_form": "median", "encoder_key": encoder_key(art)})
    save_length_model(art, model)
    ids, u, _ = probe_kind_vectors(dim)
    write_probe_vectors(art, ids, u)
    return art


@pytest.fixture
def length_predictor(length_artifact):
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    return load_predictor(length_artifact, device="cpu", backbone=tiny_backbone())


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """One real Postgres server for the whole session (pgserver bundles the binaries, so a clean machine
    needs nothing installed); the tests that need it are skipped, saying why, only if it cannot start."""
    try:
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    except Exception as exc:  # ImportError, or the server failing to start on this machine
        pytest.skip(f"the Postgres outcome-store tests need a server: pgserver could not start one "
                    f"({type(exc).__name__}: {exc})")
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request, tmp_path):
    """new_store(name) -> a store no test has used yet, on each backend in turn: a file under tmp_path,
    or a URL of a fresh schema on the session's Postgres server."""
    if request.param == "sqlite":
        return lambda name="store": str(tmp_path / f"{name}.sqlite")
    server = request.getfixturevalue("postgres_server")
    return lambda name="store": postgres_schema_url(server)


@pytest.fixture
def tiny_loader(monkeypatch, tiny_predictor):
    """The CLI loads the shipped artifact on MiniLM; here it gets the tiny predictor instead."""
    from pickwise.predictor import inference as predictor_inference

    monkeypatch.setattr(predictor_inference, "load_predictor", lambda artifact=None, **kw: tiny_predictor)
