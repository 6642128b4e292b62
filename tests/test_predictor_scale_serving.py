"""The one-scale layer at serving time: task posteriors from both encoders, evidence from the predictor."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from pickwise.predictor import onnx_encoder
from pickwise.predictor.backbone import tiny_backbone
from pickwise.predictor.scale import OneScale, set_quality

PROMPTS = ["What is 2 times 2 plus 3?", "Name the largest planet.", "def f(x): return x"]


def test_torch_and_onnx_encoders_both_give_the_task_posterior(tiny_artifact, tiny_predictor, tmp_path, monkeypatch):
    from pickwise.predictor.inference import load_predictor

    monkeypatch.setenv(onnx_encoder.CACHE_ENV, str(tmp_path))
    ref = tiny_predictor.prompt_features(PROMPTS)
    assert ref.tasks.shape == (3, tiny_predictor.model.config.n_tasks)
    np.testing.assert_allclose(ref.tasks.sum(1), 1.0, atol=1e-5)
    onnx = load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone(), precision="onnx-int8")
    got = onnx.prompt_features(PROMPTS)
    np.testing.assert_allclose(got.tasks, ref.tasks, atol=0.05)
    np.testing.assert_allclose(onnx.prompt_features(PROMPTS, single_thread=True).tasks, got.tasks, atol=1e-6)


@pytest.fixture()
def scaled_artifact(tiny_artifact, tmp_path):
    """The tiny artifact plus a scale in which model 0 has results on the first task only."""
    from pickwise.predictor.artifact import read_meta

    out = tmp_path / "scaled"
    shutil.copytree(tiny_artifact, out)
    meta = read_meta(out)
    names, tasks = meta["model_names"], meta["tasks"]
    rows = np.full((len(names), len(tasks)), 500.0)
    rows[0, 1:] = 0.0
    scale = OneScale(model_names=names, tasks=tasks, ability=np.linspace(1, -1, len(names)),
                     difficulty=np.zeros(len(tasks)), rows=rows, model_tables={n: ["synthetic"] for n in names},
                     open_difficulty=0.0, base=np.zeros(len(names), bool), set_rho=0.3)
    scale.save(out)
    return out


def test_predict_with_evidence_reports_support_and_flags_unsupported_pairs(scaled_artifact):
    from pickwise.predictor.inference import load_predictor

    predictor = load_predictor(scaled_artifact, device="cpu", backbone=tiny_backbone())
    models = predictor.model_names
    result = predictor.predict_with_evidence(PROMPTS, models)
    assert result.quality.shape == result.support.shape == result.rows.shape == (3, len(models))
    assert np.all((result.support >= 0) & (result.support <= 1))
    posterior = predictor.prompt_features(PROMPTS).tasks
    np.testing.assert_allclose(result.support[:, 0], np.clip(posterior[:, 0] * 500 / 520, 0, 1), atol=1e-5)
    for i in range(3):
        assert (models[0] in result.low_confidence[i]) == (result.support[i, 0] < 0.5)
        assert all(m not in result.low_confidence[i] for m in models[1:])
    # the same numbers through predict and through precomputed features (the service's path)
    np.testing.assert_allclose(predictor.predict(PROMPTS, models), result.quality)
    f = predictor.prompt_features(PROMPTS)
    vectors = [predictor.model_vector(m) for m in models]
    np.testing.assert_allclose(predictor.probabilities(f.u.astype(float), vectors, f.tasks), result.quality)
    assert predictor.set_rho == 0.3 and set_quality(result.quality[:, :2], predictor.set_rho).shape == (3,)


def test_a_similar_to_model_is_scored_as_its_target_where_the_scale_blends_it_in(scaled_artifact, registry_dir):
    """Model 0 has no results off its first task, so the scale blends its placement in there; a model
    said to be like it got model 0's vector without the blend, and beat its own target (0.96 against
    0.70 on a poem, shipped artifact)."""
    import yaml

    from pickwise.predictor.inference import load_predictor
    from pickwise.registry import load_registry
    from tests.api_support import new_model

    predictor = load_predictor(scaled_artifact, device="cpu", backbone=tiny_backbone())
    target = predictor.model_names[0]
    (registry_dir / "alike.yaml").write_text(yaml.safe_dump([new_model("alike", probe={"similar_to": target})]))
    snapshot = load_registry(registry_dir)
    f = predictor.prompt_features(PROMPTS)
    vectors = [predictor.model_vector(snapshot.get(n), snapshot) for n in (target, "alike")]
    result = predictor.evidence(f.u.astype(float), vectors, f.tasks)
    assert result.support[:, 0].min() < 0.5  # the blend applies to the target on some prompt
    np.testing.assert_allclose(result.quality[:, 1], result.quality[:, 0])
    assert np.isnan(result.support[:, 1]).all()  # no results of its own
    assert all(low["alike"] == f"no probe results; scored like {target!r}" for low in result.low_confidence)


def test_a_prior_only_model_is_placed_on_the_scale_where_the_trained_models_are(scaled_artifact, registry_dir):
    """Trained models are blended towards their place on the joint scale where they have no results
    (open-ended prompts); a model with only a benchmark_score (or nothing) kept its raw logit there: at
    gpt-4's mean quality over the probe set it beat gpt-4 on 14 of 14 everyday poems and advice prompts
    (shipped artifact). It is now the average trained model, shifted by its bias, in both places."""
    import yaml

    from pickwise.predictor.inference import load_predictor
    from pickwise.predictor.scale import sigmoid
    from pickwise.registry import load_registry
    from tests.api_support import new_model

    predictor = load_predictor(scaled_artifact, device="cpu", backbone=tiny_backbone())
    scale = predictor.scale
    scale.rows[:, 1:] = 0.0  # every trained model has results on the first task only
    priors = [new_model("avg", probe=None), new_model("b40", probe={"benchmark_score": 0.4}),
              new_model("b60", probe={"benchmark_score": 0.6})]
    (registry_dir / "priors.yaml").write_text(yaml.safe_dump(priors))
    snapshot = load_registry(registry_dir)
    f = predictor.prompt_features(PROMPTS)
    vectors = [predictor.model_vector(snapshot.get(n), snapshot) for n in ("avg", "b40", "b60")]
    result = predictor.evidence(f.u.astype(float), vectors, f.tasks)
    out = scale.combine((f.u @ predictor._vectors.T + predictor._bias) / predictor.temperature, f.tasks, f.u)
    s = out["support"].mean(1)  # where the trained models are supported on average, the average model is too
    assert s.min() < 0.5
    own = (f.u @ np.stack([v.vector for v in vectors]).T + [v.bias for v in vectors]) / predictor.temperature
    ability = scale.ability.mean() + (np.array([v.bias for v in vectors]) - predictor._bias.mean()) / predictor.temperature
    place = ability[None, :] - out["difficulty"][:, None]
    np.testing.assert_allclose(result.quality, sigmoid((s[:, None] * own + (1 - s[:, None]) * place) / scale.temperature),
                               rtol=1e-6)
    assert np.all(np.diff(result.quality, axis=1)[:, 1:] > 0)  # a higher benchmark_score is never lower
    assert np.isnan(result.support).all()  # no results of their own
    assert all(set(low) == {"avg", "b40", "b60"} for low in result.low_confidence)
