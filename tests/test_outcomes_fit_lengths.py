"""`pickwise fit` refits output-length vectors from the outcomes' output_tokens, as it refits quality."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pickwise.predictor.artifact import read_meta
from pickwise.predictor.lengths import LENGTHS_FILE, OUTCOME_FORMAT
from pickwise.predictor.refit import refit
from pickwise.registry import load_registry
from pickwise.registry.outcomes import Outcome, OutcomeStore, prompt_sha256, utc_timestamp
from tests.api_support import TRAINED, UNTRAINED
from tests.test_outcomes_fit import prompts


def kind_vectors(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Prompt vectors of two kinds told apart by the first coordinate, and which are of the long kind."""
    rng = np.random.default_rng(seed)
    long = np.arange(n) % 2 == 0
    u = rng.normal(scale=0.3, size=(n, dim))
    u[:, 0] = np.where(long, 1.5, -1.5)
    return u, long


def load(directory):
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    return load_predictor(directory, device="cpu", backbone=tiny_backbone())


def test_fit_moves_lengths_toward_the_outcomes_and_keeps_the_others(length_predictor, registry_dir, tmp_path):
    """One trained and one untrained model answer 512 tokens on one kind of prompt and 16 on the other.

    The rows keep only the prompt's hash and its vector (the tiny encoder gives nearly one vector to
    every prompt text), so the two kinds are told apart by made vectors."""
    snapshot = load_registry(registry_dir)
    trained = next(n for n in TRAINED if n in length_predictor.lengths.names)
    others = [n for n in TRAINED if n in length_predictor.lengths.names and n != trained]
    dim = length_predictor.model.config.dim
    u, long = kind_vectors(400, dim, seed=0)
    tokens = np.where(long, 512, 16)
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        store.add([Outcome(model=m, score=1.0, prompt_sha256=prompt_sha256(f"{m}-{i}"), output_tokens=int(t),
                           prompt_vector=tuple(float(x) for x in row.astype(np.float32)),
                           vector_encoder=length_predictor.encoder_version)
                   for m in (trained, UNTRAINED) for i, (row, t) in enumerate(zip(u, tokens))])
        store.add([Outcome(model=UNTRAINED, score=0.0, prompt=p) for p in prompts(5, seed=9)])  # no length recorded
        report = refit(length_predictor, snapshot, store, tmp_path / "fitted", holdout=0.0)
    assert report["lengths"] == {
        "outcomes_with_tokens": {"used": 800, "fit": 800, "held_out": 0},
        "models": {trained: {"rows": 400, "prompts": 400, "before": "trained"},
                   UNTRAINED: {"rows": 400, "prompts": 400, "before": "registry"}}}
    assert read_meta(tmp_path / "fitted")["refit"]["lengths"] == report["lengths"]

    fitted = load(tmp_path / "fitted")
    fresh, fresh_long = kind_vectors(200, dim, seed=1)
    specs = [snapshot.get(n) for n in (trained, UNTRAINED, *others)]
    before, before_sources = length_predictor.output_tokens(fresh, specs, snapshot=snapshot)
    after, sources = fitted.output_tokens(fresh, specs, snapshot=snapshot)
    assert before_sources == ["trained", "registry", *["trained"] * len(others)]
    assert sources == ["outcomes", "outcomes", *["trained"] * len(others)]
    truth = np.log2(np.where(fresh_long, 512, 16))[:, None]
    error_before = np.abs(np.log2(before[:, :2]) - truth)
    error_after = np.abs(np.log2(after[:, :2]) - truth)
    assert np.all(np.median(error_after, axis=0) < 0.5) and np.all(np.median(error_before, axis=0) > 1.5)
    np.testing.assert_allclose(after[:, 2:], before[:, 2:])  # models without outcome lengths keep theirs


def test_fit_reports_held_out_length_figures(length_predictor, registry_dir, tmp_path, monkeypatch, capsys):
    from pickwise.api.cli.main import main
    from pickwise.predictor import inference

    monkeypatch.setattr(inference, "load_predictor", lambda *args, **kwargs: length_predictor)
    texts = prompts(300, seed=11)
    with OutcomeStore(tmp_path / "s.sqlite") as store:  # registry prior: 100 tokens; its answers have 700
        store.add([Outcome(model=UNTRAINED, score=1.0, prompt=t, output_tokens=700 + i % 7,
                           timestamp=utc_timestamp(1.7e9 + i)) for i, t in enumerate(texts)])
    out = tmp_path / "cand"
    assert main(["fit", "--store", str(tmp_path / "s.sqlite"), "--registry", str(registry_dir), "--out", str(out)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("lengths:"))
    assert line.startswith("lengths: refitted 1 models from 240 outcomes; held-out 60: median |log2 error| base ")
    h = read_meta(out)["refit"]["holdout"]["lengths"]
    assert h["rows"] == 60 and h["per_model"][UNTRAINED]["rows"] == 60
    assert h["median_abs_log2_error"]["base"] > 2.5 > 0.3 > h["median_abs_log2_error"]["candidate"]
    assert (h["within_2x"]["base"], h["within_2x"]["candidate"]) == (0.0, 1.0)
    mean = h["mean_abs_log2_error"]  # the gate's figure: much better here, by an interval clear of 0
    assert mean["difference"]["hi"] < 0 and mean["candidate"] < mean["base"]
    assert "mean |log2 error|" in line and line.endswith(": better)")
    meta = json.loads(str(np.load(out / LENGTHS_FILE)["meta"]))
    assert meta["format"] == OUTCOME_FORMAT and meta["outcome_rows"] == {UNTRAINED: 240}

    # promoting it prints the lengths verdict the gate judged, as fit did
    monkeypatch.setenv("PICKWISE_HOME", str(tmp_path / "home"))
    assert main(["artifact", "promote", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    [verdict_line] = [x for x in printed if x.startswith("lengths:")]
    assert verdict_line == "lengths: " + line.split("; ", 1)[1], printed
    log = json.loads((tmp_path / "home" / "promotions.jsonl").read_text())
    assert log["verdicts"]["lengths"] == "better"


def test_a_second_fit_keeps_the_first_fits_length_vectors(length_predictor, registry_dir, tmp_path):
    snapshot = load_registry(registry_dir)
    trained = next(n for n in TRAINED if n in length_predictor.lengths.names)
    with OutcomeStore(tmp_path / "a.sqlite") as store:
        store.add([Outcome(model=UNTRAINED, score=1.0, prompt=t, output_tokens=700) for t in prompts(50, seed=12)])
        refit(length_predictor, snapshot, store, tmp_path / "first", holdout=0.0)
    first = load(tmp_path / "first")
    with OutcomeStore(tmp_path / "b.sqlite") as store:
        store.add([Outcome(model=trained, score=1.0, prompt=t, output_tokens=3) for t in prompts(50, seed=13)])
        report = refit(first, snapshot, store, tmp_path / "second", holdout=0.0)
    assert report["lengths"]["models"][trained]["before"] == "trained"
    second = load(tmp_path / "second")
    u = np.zeros((1, length_predictor.model.config.dim))
    _, sources = second.output_tokens(u, [snapshot.get(UNTRAINED), snapshot.get(trained)], snapshot=snapshot)
    assert sources == ["outcomes", "outcomes"]
    assert second.lengths.outcome_rows == {UNTRAINED: 50, trained: 50}


def test_fit_without_a_length_model_says_so(tiny_predictor, registry_dir, tmp_path):
    snapshot = load_registry(registry_dir)
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        store.add([Outcome(model=UNTRAINED, score=1.0, prompt=t, output_tokens=50) for t in prompts(20, seed=14)])
        report = refit(tiny_predictor, snapshot, store, tmp_path / "fitted", holdout=0.0)
    assert report["lengths"]["models"] == {} and "has no length model" in report["lengths"]["skipped"]
    assert not (tmp_path / "fitted" / LENGTHS_FILE).exists()


def test_refitting_a_refit_to_the_same_store_counts_each_length_once(length_predictor, registry_dir, tmp_path):
    snapshot = load_registry(registry_dir)
    trained = next(n for n in TRAINED if n in length_predictor.lengths.names)
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        store.add([Outcome(model=trained, score=1.0, prompt=t, output_tokens=900) for t in prompts(40, seed=15)])
        refit(length_predictor, snapshot, store, tmp_path / "first", holdout=0.0)
        report = refit(load(tmp_path / "first"), snapshot, store, tmp_path / "second", holdout=0.0)
    assert report["lengths"]["models"][trained]["before"] == "trained"
    first, second = (load(tmp_path / d).lengths.outcome[trained] for d in ("first", "second"))
    assert np.allclose(first.vector, second.vector) and first.bias == pytest.approx(second.bias)
