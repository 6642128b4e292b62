"""The output-length model (predictor/lengths.py): learning, registry fallback, MAP fit, storage."""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.predictor.lengths import (
    LENGTHS_FILE,
    FeatureMap,
    LengthModel,
    encoder_key,
    fit_length_vector,
    load_length_model,
    log2_tokens,
    predict_output_tokens,
    save_length_model,
    train_length_model,
)
from pickwise.registry.schema import ModelSpec
from tests.registry_samples import model as model_entry


def spec(name: str, expected: int = 100, aliases: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec.model_validate(model_entry(name, expected_output_tokens=expected, aliases=list(aliases)))


def synthetic(n: int = 1500, dim: int = 8, models: int = 6, noise: float = 0.3, seed: int = 0):
    """Prompt vectors u and log2 counts that depend on the prompt: y = u . l_m + c_m + noise."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n, dim))
    vectors = rng.normal(scale=0.6, size=(models, dim))
    bias = rng.uniform(3, 8, size=models)
    y = u @ vectors.T + bias + rng.normal(scale=noise, size=(n, models))
    y[rng.random(y.shape) < 0.2] = np.nan  # not every model answered every prompt
    return u, y, vectors, bias


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_learns_a_prompt_dependent_length(kind):
    u, y, _, _ = synthetic()
    train, val, test = np.arange(0, 1000), np.arange(1000, 1200), np.arange(1200, 1500)
    model, history = train_length_model(u, y, train, val, [f"m{j}" for j in range(y.shape[1])], kind=kind,
                                        max_steps=1500)
    est = model.predict(u[test], model.names, form="median")
    ok = np.isfinite(y[test])
    err = np.abs(est.log2_median - y[test])[ok]
    constant = np.abs(np.nanmean(y[train], axis=0) - y[test])[ok]  # each model's mean: no prompt dependence
    assert np.median(err) < 0.35 < np.median(constant)
    assert est.sources == ["trained"] * y.shape[1]
    assert history["best_step"] > 0 and history["train_noise_var"] < 0.2
    # the mean form multiplies the median by each model's smearing factor (>= 1 for a symmetric log-noise)
    mean = model.predict(u[test], model.names, form="mean").tokens
    assert np.all(mean >= est.tokens * 0.99)


def test_model_without_length_evidence_falls_back_to_its_registry_prior():
    model = LengthModel(["known"], np.zeros((1, 4)), np.array([5.0]), np.zeros(1), 0.5, FeatureMap(),
                        aliases={"known-alias": "known"})
    u = np.zeros((3, 4))
    tokens, sources = predict_output_tokens(model, u, [spec("other", expected=321), spec("k", aliases=("known-alias",))])
    assert sources == ["registry", "trained"]
    np.testing.assert_allclose(tokens[:, 0], 321.0)
    np.testing.assert_allclose(tokens[:, 1], 32.0)
    with pytest.raises(KeyError, match="registry entry"):
        predict_output_tokens(model, u, ["other"])
    # an artifact without a length model: every model is its registry prior
    tokens, sources = predict_output_tokens(None, u, [spec("a", expected=7)])
    assert sources == ["registry"] and np.all(tokens == 7.0)


def test_map_fit_recovers_a_new_models_length_vector_from_a_few_dozen_results():
    rng = np.random.default_rng(1)
    dim, noise = 6, 0.3
    population = rng.normal(size=(40, dim)) * np.linspace(1.0, 0.2, dim)
    pop_bias = rng.normal(6.0, 1.0, size=40)
    truth, truth_bias = rng.normal(size=dim) * np.linspace(1.0, 0.2, dim), 5.5
    u = rng.normal(size=(40, dim))
    y = u @ truth + truth_bias + rng.normal(scale=noise, size=40)
    vector, bias = fit_length_vector(u, y, population, pop_bias, noise**2)
    prior_error = np.linalg.norm(population.mean(0) - truth)
    assert np.linalg.norm(vector - truth) < 0.35 * prior_error
    assert abs(bias - truth_bias) < 0.3
    fresh = rng.normal(size=(500, dim))
    assert np.corrcoef(fresh @ vector + bias, fresh @ truth + truth_bias)[0, 1] > 0.95
    # with no results the fit is the population mean
    v0, b0 = fit_length_vector(u[:0], y[:0], population, pop_bias, noise**2)
    np.testing.assert_allclose(v0, population.mean(0), atol=1e-8)
    assert b0 == pytest.approx(pop_bias.mean())


def test_fitted_vector_is_used_for_a_registered_model_and_says_so():
    u, y, vectors, bias = synthetic(n=400, models=5, seed=2)
    model = LengthModel([f"m{j}" for j in range(4)], vectors[:4], bias[:4], np.zeros(4), 0.09, FeatureMap())
    new = spec("newcomer", expected=999)
    assert model.predict(u[:5], [new]).sources == ["registry"]
    ok = np.isfinite(y[:60, 4])
    model.add_fitted("newcomer", u[:60][ok], np.exp2(y[:60, 4][ok]))
    est = model.predict(u[100:], [new], form="median")
    assert est.sources == ["fitted"]
    assert np.corrcoef(est.log2_median[:, 0], u[100:] @ vectors[4] + bias[4])[0, 1] > 0.9


def test_saved_with_the_artifact_and_ignored_after_the_encoder_changes(tiny_artifact, tmp_path):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    u, y, _, _ = synthetic(n=300, dim=8, models=3)
    model, _ = train_length_model(u, y, np.arange(200), np.arange(200, 300), ["a", "b", "c"], kind="mlp",
                                  max_steps=200)
    model.meta = {"count_form": "mean", "encoder_key": encoder_key(art)}
    save_length_model(art, model)
    loaded = load_length_model(art)
    np.testing.assert_allclose(loaded.predict(u, ["a", "b", "c"]).tokens, model.predict(u, ["a", "b", "c"]).tokens,
                               rtol=1e-4)
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    predictor = load_predictor(art, device="cpu", backbone=tiny_backbone())
    tokens, sources = predictor.output_tokens(u[:2], ["b", spec("zzz", expected=50)])
    assert sources == ["trained", "registry"] and tokens.shape == (2, 2) and np.all(tokens[:, 1] == 50)
    # a retrained encoder makes the stored vectors meaningless: the file is ignored
    model.meta["encoder_key"] = "something-else"
    save_length_model(art, model)
    assert load_length_model(art) is None
    assert (art / LENGTHS_FILE).exists()


def test_log2_tokens_clips_empty_answers():
    np.testing.assert_allclose(log2_tokens(np.array([0.0, 1.0, 8.0, np.nan])), [0.0, 0.0, 3.0, np.nan])


def test_estimates_stay_within_what_the_model_was_seen_to_produce():
    # a linear form extrapolates on unfamiliar prompts; estimates are clipped to the training range
    # and, for a registry entry, to its max_output_tokens
    model = LengthModel(["m"], np.array([[10.0]]), np.array([0.0]), np.zeros(1), 0.5, FeatureMap(),
                        log2_range=np.array([[1.0, 6.0]]))
    est = model.predict(np.array([[-5.0], [0.3], [5.0]]), ["m"], form="median")
    np.testing.assert_allclose(est.tokens[:, 0], [2.0, 8.0, 64.0])
    capped = spec("m-spec", aliases=("m",), expected=30)
    assert model.predict(np.array([[5.0]]), [capped]).tokens[0, 0] == 64.0
    small = ModelSpec.model_validate(model_entry("m2", aliases=["m"], max_output_tokens=50, expected_output_tokens=30))
    assert model.predict(np.array([[5.0]]), [small]).tokens[0, 0] == 50.0


def test_open_ended_prompts_get_at_least_an_open_ended_answers_length(tiny_predictor, monkeypatch):
    """A model measured only on benchmark answers (a letter) would be priced for a one-token essay."""
    dim = tiny_predictor.model.config.dim
    lengths = LengthModel(["letters", "chat-a", "chat-b"], np.zeros((3, dim)), np.array([0.0, 8.0, 9.0]),
                          np.zeros(3), 0.5, FeatureMap(),
                          model_tables={"letters": ["mmlu_pro_25models"], "chat-a": ["alpacaeval_57models"],
                                        "chat-b": ["alpacaeval_57models"]})
    monkeypatch.setattr(tiny_predictor, "lengths", lengths)
    u = np.zeros((2, dim))
    tokens, _ = tiny_predictor.output_tokens(u, [spec("letters", expected=1)], np.array([0.9, 0.1]))
    assert tokens[0, 0] == pytest.approx(np.median([2.0 ** 8, 2.0 ** 9]))  # open-ended: the pool's median
    assert tokens[1, 0] == pytest.approx(1.0)  # a benchmark-like prompt keeps its own estimate
