"""`pickwise fit` on the tiny predictor: recovering a known vector, held-out figures, promotion, rollback."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pickwise.predictor.artifact import REFIT_FORMAT_VERSION, read_meta
from pickwise.predictor.promotion import (
    PromotionRefused,
    promote,
    promoted_artifact_dir,
    rollback,
    serving_artifact_dir,
)
from pickwise.predictor.refit import refit
from pickwise.registry import load_registry
from pickwise.registry.outcomes import Outcome, OutcomeStore, utc_timestamp
from tests.api_support import UNTRAINED

TOPICS = ["Compute the integral of x^{n} from 0 to {m}.", "Write a Python function that sorts {n} numbers by {m}.",
          "Who was the {n}th king of country {m}?", "Translate '{n} apples and {m} pears' into French.",
          "Fix this loop: for i in range({n}) print(i * {m})", "Name a river longer than {n}{m} km."]


def prompts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [TOPICS[i % len(TOPICS)].format(n=int(rng.integers(1, 999)), m=int(rng.integers(1, 999))) + f" #{seed}-{i}"
            for i in range(n)]


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PICKWISE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _store(path, texts, model, scores, start=0):
    with OutcomeStore(path) as store:
        store.add([Outcome(model=model, score=float(s), prompt=t, timestamp=utc_timestamp(1.7e9 + start + i))
                   for i, (t, s) in enumerate(zip(texts, scores))])


def test_refit_recovers_a_synthetic_models_vector(tmp_path, tiny_predictor, tiny_artifact, registry_dir):
    """Outcomes drawn from a known (e, b) on known prompt vectors give back (e, b).

    The rows keep only the prompt's hash and its vector (the tiny random encoder gives nearly the
    same u to every prompt, so its text rows would pin down nothing but the bias)."""
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor
    from pickwise.registry.outcomes import prompt_sha256

    snapshot = load_registry(registry_dir)
    spec = snapshot.get(UNTRAINED)
    assert tiny_predictor.model_vector(spec, snapshot).source == "population"
    vectors, bias = tiny_predictor.trained_vectors
    rng = np.random.default_rng(0)
    true_e = vectors.mean(0) - 2.0 * (vectors[0] - vectors.mean(0))  # unlike the average model
    true_b = float(bias.mean()) + 0.3
    u = rng.normal(size=(3000, vectors.shape[1]))
    y = rng.random(3000) < sigmoid((u @ true_e + true_b) / tiny_predictor.temperature)
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        store.add([Outcome(model=UNTRAINED, score=float(s), prompt_sha256=prompt_sha256(f"p{i}"),
                           prompt_vector=tuple(float(x) for x in row.astype(np.float32)),
                           vector_encoder=tiny_predictor.encoder_version) for i, (row, s) in enumerate(zip(u, y))])
        store.add([Outcome(model=UNTRAINED, score=1.0, prompt_sha256=prompt_sha256("old"), prompt_vector=(1.0,) * 8,
                           vector_encoder="another encoder")])
        report = refit(tiny_predictor, snapshot, store, tmp_path / "fitted", holdout=0.2)
    assert report["models"][UNTRAINED] == {"rows": 3000, "prompts": 3000, "before": "population"}
    assert report["outcomes"]["skipped"] == {"unknown_model": 0, "hashed_without_vector": 1}
    assert report["holdout"] == {"rows": 0}  # hashed rows are never held out: they have no text to score

    fitted = load_predictor(tmp_path / "fitted", device="cpu", backbone=tiny_backbone())
    assert fitted.meta["format_version"] == REFIT_FORMAT_VERSION and fitted.meta["refit"]["outcomes"]["used"] == 3000
    assert fitted.encoder_version == tiny_predictor.version
    vec = fitted.model_vector(spec, snapshot)
    assert vec.source == "outcomes" and vec.low_confidence is None
    cosine = vec.vector @ true_e / np.linalg.norm(vec.vector) / np.linalg.norm(true_e)
    assert cosine > 0.95 and abs(vec.bias - true_b) < 0.1
    fresh = rng.normal(size=(500, vectors.shape[1]))
    want = sigmoid((fresh @ true_e + true_b) / fitted.temperature)
    assert np.abs(fitted.probabilities(fresh, [vec])[:, 0] - want).mean() < 0.03
    # trained models without outcomes keep their vectors
    assert np.allclose(fitted.model_vector("gpt-4-1106-preview").vector,
                       tiny_predictor.model_vector("gpt-4-1106-preview").vector)


def test_held_out_outcomes_judge_the_candidate(tmp_path, tiny_predictor, registry_dir):
    snapshot = load_registry(registry_dir)
    texts = prompts(500, seed=1)
    _store(tmp_path / "s.sqlite", texts, UNTRAINED, [1.0] * 500)
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        report = refit(tiny_predictor, snapshot, store, tmp_path / "fitted", holdout=0.2)
    assert report["outcomes"] == {"used": 500, "fit": 400, "held_out": 100, "prompts": 500,
                                  "skipped": {"unknown_model": 0, "hashed_without_vector": 0}}
    assert report["holdout"]["brier"]["candidate"] < report["holdout"]["brier"]["base"]
    assert report["time_range"] == [utc_timestamp(1.7e9), utc_timestamp(1.7e9 + 499)]


def test_a_second_fit_uses_the_feature_cache(tmp_path, tiny_predictor, registry_dir):
    snapshot = load_registry(registry_dir)
    texts = prompts(60, seed=3)
    _store(tmp_path / "s.sqlite", texts, "gpt-4-1106-preview", np.arange(60) % 2)
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        first = refit(tiny_predictor, snapshot, store, tmp_path / "a", holdout=0.0)
        second = refit(tiny_predictor, snapshot, store, tmp_path / "b", holdout=0.0)
    assert (first["prompts_encoded"], second["prompts_encoded"]) == (60, 0)
    assert json.loads((tmp_path / "a" / "outcome_vectors.json").read_text()) == \
        json.loads((tmp_path / "b" / "outcome_vectors.json").read_text())


def _worse_candidate(tmp_path, predictor, snapshot) -> str:
    """Old outcomes say gpt-4 fails everything; the newest (held out) say it succeeds: the fit is worse there."""
    texts = prompts(400, seed=4)
    _store(tmp_path / "w.sqlite", texts, "gpt-4-1106-preview", [0.0] * 320 + [1.0] * 80)
    with OutcomeStore(tmp_path / "w.sqlite") as store:
        refit(predictor, snapshot, store, tmp_path / "worse", holdout=0.2)
    return str(tmp_path / "worse")


def _better_candidate(tmp_path, predictor, snapshot, name="better") -> str:
    texts = prompts(400, seed=5)
    _store(tmp_path / f"{name}.sqlite", texts, "gpt-4-1106-preview", [0.0] * 400)
    with OutcomeStore(tmp_path / f"{name}.sqlite") as store:
        refit(predictor, snapshot, store, tmp_path / name, holdout=0.2)
    return str(tmp_path / name)


def test_promotion_is_refused_when_worse_and_rolls_back(tmp_path, home, tiny_predictor, tiny_artifact, registry_dir):
    from pickwise.predictor.artifact import default_artifact_dir

    snapshot = load_registry(registry_dir)
    worse = _worse_candidate(tmp_path, tiny_predictor, snapshot)
    h = read_meta(worse)["refit"]["holdout"]
    assert h["brier"]["candidate"] > h["brier"]["base"]
    with pytest.raises(PromotionRefused, match="Brier"):
        promote(worse)
    assert promoted_artifact_dir() is None and serving_artifact_dir() == default_artifact_dir()
    with pytest.raises(PromotionRefused, match="no held-out figures"):
        promote(tiny_artifact)

    better = _better_candidate(tmp_path, tiny_predictor, snapshot)
    first = promote(better)
    assert first["worse"] == [] and serving_artifact_dir() == promoted_artifact_dir()
    assert (promoted_artifact_dir() / "outcome_vectors.json").is_file()
    second = promote(worse, force=True)
    assert second["forced"] and second["previous"]["version"] == first["version"]
    assert rollback()["to"]["version"] == first["version"] and promoted_artifact_dir() == home / "artifacts" / first["version"]
    rollback()
    assert promoted_artifact_dir() is None
    with pytest.raises(PromotionRefused, match="nothing to roll back"):
        rollback()
    log = [json.loads(line) for line in (home / "promotions.jsonl").read_text().splitlines()]
    assert [r["action"] for r in log] == ["promote", "promote", "rollback", "rollback"]
    assert log[0]["figures"]["brier"]["candidate"] <= log[0]["figures"]["brier"]["base"]


def test_cli_promote_and_rollback(tmp_path, home, tiny_predictor, registry_dir, capsys):
    from pickwise.api.cli.main import main

    snapshot = load_registry(registry_dir)
    worse = _worse_candidate(tmp_path, tiny_predictor, snapshot)
    assert main(["artifact", "promote", worse]) == 2
    assert "is not promoted: Brier" in capsys.readouterr().err
    assert main(["artifact", "promote", worse, "--force"]) == 0
    assert main(["artifact", "status"]) == 0
    out = capsys.readouterr().out  # promote's lines, then status's JSON
    assert json.loads(out[out.index("\n{") + 1:])["serving"].startswith(str(home))
    assert main(["artifact", "rollback"]) == 0
    assert promoted_artifact_dir() is None


@pytest.mark.parametrize("text", ["{half a pointer", "[1, 2]", '{"current": "x", "history": []}',
                                  '{"current": null}', '{"current": null, "history": [{"path": 3}]}', None])
def test_a_broken_pointer_is_an_error_naming_it_not_a_traceback(home, text, tmp_path, capsys):
    """A hand-edited (or directory) artifact.json raised JSONDecodeError, AttributeError or
    IsADirectoryError from `artifact status` and from every command that loads the default artifact."""
    from pickwise.api.cli.main import main

    pointer = home / "artifact.json"
    home.mkdir(parents=True)
    pointer.mkdir() if text is None else pointer.write_text(text)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi"}\n')
    for argv in (["artifact", "status"], ["artifact", "rollback"], ["predict", "--input", str(prompts)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"error: the promotion pointer {pointer} cannot be read (" in err and "delete it" in err, err


def test_a_promoted_artifact_that_is_gone_is_named_with_the_way_back(tmp_path, home, tiny_predictor, registry_dir,
                                                                      capsys):
    """predict said "<path>: not a predictor artifact (no meta.json)" of a path the user never gave."""
    import shutil

    from pickwise.api.cli.main import main

    better = _better_candidate(tmp_path, tiny_predictor, load_registry(registry_dir))
    assert main(["artifact", "promote", better]) == 0
    shutil.rmtree(promoted_artifact_dir())
    capsys.readouterr()
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi"}\n')
    for argv in (["predict", "--input", str(prompts)], ["artifact", "status"]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert "no longer exists; `pickwise artifact rollback` serves the one promoted before it" in err, err
    assert json.loads(out)["serving"] is None and json.loads(out)["current"]
    assert main(["artifact", "rollback"]) == 0 and main(["artifact", "status"]) == 0


def test_promote_says_when_what_served_was_not_what_it_was_judged_against(tmp_path, home, tiny_predictor,
                                                                           registry_dir, capsys):
    # both candidates were fitted on the same base: the second is judged against it, not the first
    from pickwise.api.cli.main import main
    from pickwise.predictor.artifact import artifact_version

    snapshot = load_registry(registry_dir)
    better = _better_candidate(tmp_path, tiny_predictor, snapshot)
    worse = _worse_candidate(tmp_path, tiny_predictor, snapshot)
    assert main(["artifact", "promote", better]) == 0
    capsys.readouterr()
    assert main(["artifact", "promote", worse, "--force"]) == 0
    out = capsys.readouterr().out
    assert (f"compare it with {tiny_predictor.version}, the artifact it was fitted on; {artifact_version(better)}, "
            "which served until now, was not compared") in out
    log = [json.loads(line) for line in (home / "promotions.jsonl").read_text().splitlines()]
    assert log[-1]["judged_against"] == tiny_predictor.version and log[-1]["replaced"] == artifact_version(better)


def test_promoting_what_already_serves_changes_nothing(tmp_path, home, tiny_predictor, registry_dir, capsys):
    from pickwise.api.cli.main import main

    better = _better_candidate(tmp_path, tiny_predictor, load_registry(registry_dir))
    assert main(["artifact", "promote", better]) == 0
    capsys.readouterr()
    assert main(["artifact", "promote", better]) == 0  # a second history step would make rollback a no-op
    assert "already serves" in capsys.readouterr().out
    log = [json.loads(line) for line in (home / "promotions.jsonl").read_text().splitlines()]
    assert [r["action"] for r in log] == ["promote"]
    assert main(["artifact", "rollback"]) == 0
    assert "to the shipped artifact" in capsys.readouterr().out and promoted_artifact_dir() is None


def test_promoting_the_shipped_artifact_while_it_serves_changes_nothing(home):
    from pickwise.predictor.artifact import default_artifact_dir

    assert promote(default_artifact_dir())["action"] == "unchanged"  # no --force needed: nothing would change
    assert not (home / "promotions.jsonl").exists() and promoted_artifact_dir() is None


def test_a_probe_registered_model_is_fitted_to_its_probe_results_and_outcomes(tiny_predictor):
    from pickwise.predictor.refit import fit_one
    from pickwise.registry import Probe, ProbeResult
    from tests.test_predictor_inference import spec

    ids, probe_u = tiny_predictor.probe_vectors()
    weak = spec("weak", Probe(results=[ProbeResult(prompt_id=i, score=0.0) for i in ids]))
    assert tiny_predictor.model_vector(weak).source == "probe"
    u = probe_u[:20]
    e0, b0, _ = fit_one(tiny_predictor, weak, None, u[:0], np.zeros(0), 10.0)
    e1, b1, before = fit_one(tiny_predictor, weak, None, u, np.ones(20), 10.0)
    assert before == "probe" and b0 == pytest.approx(tiny_predictor.model_vector(weak).bias, abs=1e-6)
    assert b0 < b1  # twenty successes pull it up from its all-failures probe fit ...
    e2, b2, _ = fit_one(tiny_predictor, weak, None, np.vstack([u] * 20), np.ones(400), 10.0)
    assert b1 < b2  # ... and more of them further


def test_cli_import_fit_promote(tmp_path, home, tiny_predictor, registry_dir, monkeypatch, capsys):
    from pickwise.api.cli.main import main
    from pickwise.predictor import inference

    monkeypatch.setattr(inference, "load_predictor", lambda *args, **kwargs: tiny_predictor)
    rows = [{"prompt": p, "model": "gpt-4-1106-preview", "score": 0.0, "timestamp": 1.7e9 + i}
            for i, p in enumerate(prompts(200, seed=7))]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = str(tmp_path / "s.sqlite")
    assert main(["outcomes", "import", str(source), "--store", store, "--registry", str(registry_dir)]) == 0
    assert main(["fit", "--store", store, "--registry", str(registry_dir), "--out", str(tmp_path / "cand")]) == 0
    out = capsys.readouterr().out
    assert "fitted 1 models from 160 outcomes (40 held out" in out and "Brier base" in out
    d = read_meta(tmp_path / "cand")["refit"]["holdout"]["brier"]["difference"]
    assert f"(difference {d['point']:+.4f}, 95% interval [{d['lo']:+.4f}, {d['hi']:+.4f}]: better)" in out
    assert main(["artifact", "promote", str(tmp_path / "cand")]) == 0
    assert "95% interval" in capsys.readouterr().out
    assert promoted_artifact_dir().parent == home / "artifacts"
    assert main(["fit", "--store", store, "--registry", str(registry_dir), "--out", str(registry_dir)]) == 2
    assert "not a pickwise artifact" in capsys.readouterr().err
    # the next fit starts from what serves now, the promoted artifact, and is judged against it
    loaded = []
    monkeypatch.setattr(inference, "load_predictor", lambda *args, **kwargs: loaded.append(args[0]) or tiny_predictor)
    assert main(["fit", "--store", store, "--registry", str(registry_dir), "--out", str(tmp_path / "next")]) == 0
    assert [Path(p) for p in loaded] == [promoted_artifact_dir()]


def test_import_with_hashed_prompts_keeps_vectors_not_text(tmp_path, tiny_predictor, registry_dir, monkeypatch):
    from pickwise.api.cli.main import main
    from pickwise.predictor import inference

    monkeypatch.setattr(inference, "load_predictor", lambda *args, **kwargs: tiny_predictor)
    source = tmp_path / "in.csv"
    source.write_text("prompt,model,score\nsecret one,claude-v2,1\nsecret two,claude-v2,0\nsecret one,Llama-2-7b-hf,0\n")
    store = tmp_path / "s.sqlite"
    assert main(["outcomes", "import", str(source), "--store", str(store), "--registry", str(registry_dir),
                 "--hash-prompts"]) == 0
    assert b"secret" not in store.read_bytes()  # the WAL is checkpointed into it on close
    with OutcomeStore(store) as s:
        rows = list(s.outcomes())
    assert all(o.prompt is None and o.vector_encoder == tiny_predictor.encoder_version for o in rows)
    assert rows[0].prompt_vector == rows[2].prompt_vector != rows[1].prompt_vector


def test_a_candidate_without_held_out_figures_is_refused_with_the_reason():
    from pickwise.predictor.promotion import judge

    assert "not a `pickwise fit` artifact" in judge({}).worse[0]
    assert "--holdout 0" in judge({"refit": {"holdout_share": 0.0, "holdout": {"rows": 0}}}).worse[0]
    assert "no outcome was held out" in judge({"refit": {"holdout_share": 0.2, "holdout": {"rows": 0}}}).worse[0]


def test_fitting_a_refit_to_the_same_store_counts_each_outcome_once(tmp_path, tiny_predictor, registry_dir):
    """`fit` on the promoted refit (the usual next week) starts each model with outcomes in the store
    from what it had before any refit: its earlier outcome vector is not a prior for the same outcomes."""
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    snapshot = load_registry(registry_dir)
    _store(tmp_path / "s.sqlite", prompts(80, seed=21), "gpt-4-1106-preview", [0.0] * 80)
    _store(tmp_path / "s.sqlite", prompts(80, seed=22), UNTRAINED, [1.0] * 80, start=100)
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        refit(tiny_predictor, snapshot, store, tmp_path / "first", holdout=0.2)
        first = load_predictor(tmp_path / "first", device="cpu", backbone=tiny_backbone())
        report = refit(first, snapshot, store, tmp_path / "second", holdout=0.2)
    assert {m: f["before"] for m, f in report["models"].items()} == {"gpt-4-1106-preview": "trained",
                                                                     UNTRAINED: "population"}
    assert json.loads((tmp_path / "first" / "outcome_vectors.json").read_text()) == \
        json.loads((tmp_path / "second" / "outcome_vectors.json").read_text())


def test_a_trained_model_registered_under_another_name_is_scored_from_its_refit(tmp_path, tiny_predictor):
    """A registry entry renaming a trained model (its trained name an alias) gets its refitted vector when
    served, and a refit of that refit starts it from its trained vector again."""
    import yaml

    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor
    from pickwise.registry import default_registry_dir
    from tests.api_support import copy_models

    trained = load_registry(default_registry_dir()).get("gpt-4-1106-preview").model_dump(exclude_defaults=True)
    copy_models(tmp_path / "reg", names=("Llama-2-7b-hf", UNTRAINED))
    renamed = {**trained, "name": "gpt4", "aliases": ["gpt-4-1106-preview"]}
    (tmp_path / "reg" / "renamed.yaml").write_text(yaml.safe_dump([renamed], sort_keys=False))
    snapshot = load_registry(tmp_path / "reg")
    spec = snapshot.get("gpt4")
    _store(tmp_path / "s.sqlite", prompts(80, seed=23), "gpt4", [0.0] * 80)
    with OutcomeStore(tmp_path / "s.sqlite") as store:
        refit(tiny_predictor, snapshot, store, tmp_path / "first", holdout=0.0)
        first = load_predictor(tmp_path / "first", device="cpu", backbone=tiny_backbone())
        refit(first, snapshot, store, tmp_path / "second", holdout=0.0)
    second = load_predictor(tmp_path / "second", device="cpu", backbone=tiny_backbone())
    assert first.model_vector(spec, snapshot).bias < tiny_predictor.model_vector(spec, snapshot).bias  # all failures
    assert np.allclose(second.model_vector(spec, snapshot).vector, first.model_vector(spec, snapshot).vector)
    assert second.model_vector(spec, snapshot).bias == pytest.approx(first.model_vector(spec, snapshot).bias)


def test_fit_help_says_a_refit_is_a_fine_base(capsys):
    from pickwise.api.cli.main import main

    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "count its outcomes twice" not in text and "counted once" in text


def test_below_fifty_outcomes_a_new_model_is_held_by_cold_starts_prior(tmp_path, tiny_predictor, registry_dir):
    """Fewer than MIN_OUTCOME_ROWS outcomes fit a new model under cold start's prior (trust 1), whatever
    --trust-new says: on the shipped artifact trust 0.03 let one thumbs-up lift a YAML-only model from a
    mean of 0.53 to 0.89 over the everyday prompts (0.59 under trust 1); from 50 on, --trust-new applies."""
    snapshot = load_registry(registry_dir)

    def vector(n: int, trust_new: float, name: str) -> list:
        store_path = tmp_path / f"{name}.sqlite"
        _store(store_path, prompts(n, seed=31), UNTRAINED, [1.0] * n)
        with OutcomeStore(store_path) as store:
            refit(tiny_predictor, snapshot, store, tmp_path / name, holdout=0.0, trust_new=trust_new)
        return json.loads((tmp_path / name / "outcome_vectors.json").read_text())["models"][UNTRAINED]["vector"]

    assert vector(3, 0.03, "few-loose") == vector(3, 1.0, "few-cold-start")
    assert vector(60, 0.03, "many-loose") != vector(60, 1.0, "many-cold-start")


def test_fit_says_how_many_outcomes_it_left_out(tmp_path, tiny_predictor, registry_dir):
    """Outcomes of a model gone from the registry (or imported with another --registry) were left out of the
    fit with only a count in --json: the summary line read as if every stored outcome had been fitted."""
    from pickwise.api.cli.outcomes import fitted_line

    texts = prompts(20, seed=7)
    _store(tmp_path / "o.sqlite", texts, "gpt-4-1106-preview", [1.0, 0.0] * 10)
    _store(tmp_path / "o.sqlite", texts, "a-model-since-removed", [1.0] * 20, start=100)
    with OutcomeStore(tmp_path / "o.sqlite") as store:
        report = refit(tiny_predictor, load_registry(registry_dir), store, tmp_path / "fit", holdout=0.2)
    line = fitted_line(report, tmp_path / "fit")
    assert line.endswith("; left out: 20 outcomes of models not in the registry"), line
    report["outcomes"]["skipped"] = {"unknown_model": 0, "hashed_without_vector": 0}
    assert "left out" not in fitted_line(report, tmp_path / "fit")
