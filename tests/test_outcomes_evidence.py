"""Outcomes as evidence: a refitted model is supported where its outcomes were, open-ended prompts included."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench.bench_outcomes import BareSnapshot, BareSpec
from pickwise.predictor.backbone import tiny_backbone
from pickwise.predictor.scale import OneScale

CHAT = [f"hey there, how was your day {i}? tell me about it" for i in range(60)]
OTHER = ["What should I cook tonight?", "hi, how are you?", "Write me a poem about rain."]


def _open_scale_artifact(tiny_artifact, tmp_path, p_open: float):
    """The tiny artifact with a scale whose detector reads every prompt as open-ended with `p_open`: no
    priced table measures such prompts, so no model has support there from its training rows."""
    from pickwise.predictor.artifact import read_meta

    out = tmp_path / "open"
    shutil.copytree(tiny_artifact, out)
    meta = read_meta(out)
    names, tasks = meta["model_names"], meta["tasks"]
    width = meta["model_config"]["dim"] + len(tasks)
    detector = {"mean": np.zeros(width), "std": np.ones(width), "w": np.zeros(width),
                "b": np.array(np.log(p_open / (1 - p_open)))}
    OneScale(model_names=names, tasks=tasks, ability=np.linspace(1, -1, len(names)), difficulty=np.zeros(len(tasks)),
             rows=np.full((len(names), len(tasks)), 500.0), model_tables={n: ["synthetic"] for n in names},
             open_difficulty=0.5, base=np.zeros(len(names), bool), set_rho=0.3, detector=detector).save(out)
    return out


@pytest.fixture()
def open_predictor(tiny_artifact, tmp_path):
    from pickwise.predictor.inference import load_predictor

    return load_predictor(_open_scale_artifact(tiny_artifact, tmp_path, 0.999), device="cpu",
                          backbone=tiny_backbone())


def _rows(predictor, model: str, scores: list[float]):
    from pickwise.predictor.refit import Features, OutcomeRows
    from pickwise.registry.outcomes import prompt_sha256

    shas = [prompt_sha256(p) for p in CHAT[:len(scores)]]
    f = predictor.prompt_features(CHAT[:len(scores)])
    features = Features({s: f.u[i] for i, s in enumerate(shas)}, {s: f.tasks[i] for i, s in enumerate(shas)},
                        {s: f.pooled[i] for i, s in enumerate(shas)})
    rows = OutcomeRows([model] * len(scores), np.array(scores, dtype=float), shas, ["2026-01-01T00:00:00Z"] * len(scores),
                       np.full(len(scores), np.nan), texts=dict(zip(shas, CHAT)))
    return rows, features


def test_a_trained_models_open_ended_outcomes_support_it_there_and_move_it(open_predictor):
    from pickwise.predictor.refit import fit_vectors

    weak = open_predictor.model_names[-1]  # the lowest ability on the scale
    f = open_predictor.prompt_features(OTHER)
    before = open_predictor.evidence(f.u, [open_predictor.model_vector(weak)], f.tasks, pooled=f.pooled)
    assert np.all(before.support[:, 0] < 0.01) and all(weak in low for low in before.low_confidence)

    rows, features = _rows(open_predictor, weak, [1.0] * 55 + [0.0] * 5)
    fitted = fit_vectors(open_predictor, BareSnapshot(), rows, features, np.ones(len(rows.scores), dtype=bool))
    assert fitted[weak]["evidence"]["open_rows"] == pytest.approx(60 * open_predictor.scale.open_cut(
        np.array([0.999]))[0], rel=1e-6)
    after = open_predictor.with_outcome_vectors(fitted).evidence(
        f.u, [open_predictor.with_outcome_vectors(fitted).model_vector(weak)], f.tasks, pooled=f.pooled)
    assert np.all(after.support[:, 0] > 0.7)  # 60 open-ended outcomes: 60 / (60 + n0 20) of the way
    assert not any(weak in low for low in after.low_confidence)
    assert np.all(after.quality[:, 0] > before.quality[:, 0] + 0.1)  # 92% of its chats went well


def test_a_new_model_is_confident_only_where_its_outcomes_were(tiny_artifact, tmp_path):
    # outcomes on open-ended prompts say nothing about a table's prompts: there it stays flagged
    from pickwise.predictor.inference import load_predictor
    from pickwise.predictor.refit import fit_vectors

    predictor = load_predictor(_open_scale_artifact(tiny_artifact, tmp_path, 0.999), device="cpu",
                               backbone=tiny_backbone())
    rows, features = _rows(predictor, "team-model", [1.0, 0.0] * 30)
    fitted = fit_vectors(predictor, BareSnapshot(), rows, features, np.ones(len(rows.scores), dtype=bool))
    assert fitted["team-model"]["evidence"]["ability"] is not None
    refitted = predictor.with_outcome_vectors(fitted)
    f = predictor.prompt_features(OTHER)
    vector = refitted.model_vector(BareSpec("team-model"))
    assert vector.source == "outcomes" and vector.outcomes is not None
    open_ended = refitted.evidence(f.u, [vector], f.tasks, pooled=f.pooled)
    assert np.all(open_ended.support[:, 0] > 0.7) and not any(open_ended.low_confidence)

    closed = OneScale.load(tmp_path / "open")
    closed.detector = {}  # the same prompts read as the tables' kind: no outcome was there
    refitted.scale = closed
    tabled = refitted.evidence(f.u, [vector], f.tasks, pooled=f.pooled)
    assert np.all(tabled.support[:, 0] < 0.5) and all("team-model" in low for low in tabled.low_confidence)

