"""QualityPredictor: shapes, calibration range, model resolution, cold-start and prior fallbacks."""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.predictor.coldstart import fit_model_vector
from pickwise.registry import Latency, ModelSpec, Pricing, Probe, ProbeResult
from tests.tables import synthetic_table


def spec(name, probe=None, aliases=()):
    return ModelSpec(
        name=name, provider="test", aliases=aliases,
        pricing=Pricing(input_per_million=1.0, output_per_million=2.0),
        latency=Latency(ttft_ms=100, output_tokens_per_s=50),
        context_window=8000, max_output_tokens=1000, expected_output_tokens=100, probe=probe,
    )


def test_predict_shapes_and_range(tiny_predictor):
    prompts = ["What is 2 times 2 plus 3?", "", "日本語の質問です", "\x00\x01 junk ###", "word " * 5000]
    q, truncated = tiny_predictor.predict_detailed(prompts, ["gpt-4-1106-preview", "Llama-2-7b-hf"])
    assert q.shape == (5, 2)
    assert np.all((q > 0) & (q < 1))
    assert truncated == [False, False, False, False, True]
    assert tiny_predictor.predict([], ["Llama-2-7b-hf"]).shape == (0, 1)


def test_encoding_a_model_left_in_training_mode_switches_dropout_off(tiny_artifact):
    from pickwise.predictor.artifact import load_model
    from pickwise.predictor.backbone import load_tokenizer, tiny_backbone
    from pickwise.predictor.inference import encode_prompt_vectors

    model = load_model(tiny_artifact, tiny_backbone(), merge=False)[0].train()
    prompts = ["What is 2 times 2 plus 3?", "Name the largest planet."]
    first, _ = encode_prompt_vectors(model, load_tokenizer(), prompts, max_len=32)
    assert not model.training
    np.testing.assert_array_equal(encode_prompt_vectors(model, load_tokenizer(), prompts, max_len=32)[0], first)


def test_unknown_trained_name_is_a_clear_error(tiny_predictor):
    with pytest.raises(KeyError, match="not in the predictor artifact"):
        tiny_predictor.predict(["hi"], ["no-such-model"])


def test_registry_spec_resolves_by_alias(tiny_predictor):
    by_alias = tiny_predictor.predict(["x"], [spec("renamed", aliases=("Llama-2-7b-hf",))])
    by_name = tiny_predictor.predict(["x"], ["Llama-2-7b-hf"])
    np.testing.assert_allclose(by_alias, by_name)
    assert tiny_predictor.low_confidence([spec("renamed", aliases=("Llama-2-7b-hf",))]) == {}


def test_cold_start_from_probe_results_follows_the_results(tiny_predictor):
    ids, _ = tiny_predictor.probe_vectors()
    strong = spec("new-strong", Probe(results=[ProbeResult(prompt_id=i, score=1.0) for i in ids]))
    weak = spec("new-weak", Probe(results=[ProbeResult(prompt_id=i, score=0.0) for i in ids]))
    q = tiny_predictor.predict(["What is 7 times 7 plus 3?", "Name a river longer than 9 km."], [strong, weak])
    assert np.all(q[:, 0] > q[:, 1])
    assert tiny_predictor.low_confidence([strong, weak]) == {}


def test_prior_fallbacks_are_flagged(tiny_predictor):
    like = spec("like-gpt4", Probe(similar_to="gpt-4-1106-preview"))
    bench = spec("bench-only", Probe(benchmark_score=0.8))
    bare = spec("nothing-known")
    q = tiny_predictor.predict(["a prompt"], [like, "gpt-4-1106-preview", bench, bare])
    assert q[0, 0] == pytest.approx(q[0, 1])
    flags = tiny_predictor.low_confidence([like, bench, bare])
    assert set(flags) == {"like-gpt4", "bench-only", "nothing-known"}
    ids, u = tiny_predictor.probe_vectors()
    vec = tiny_predictor.model_vector(bench)
    mean_q = tiny_predictor.probabilities(u, [vec]).mean()
    assert mean_q == pytest.approx(0.8, abs=1e-3)


def test_fit_model_vector_recovers_a_planted_model():
    rng = np.random.default_rng(1)
    dim = 6
    trained = rng.normal(0, 1, size=(30, dim))
    bias = rng.normal(0, 1, size=30)
    u = rng.normal(0, 1, size=(400, dim))
    true_e, true_b = trained[3], bias[3]
    p = 1 / (1 + np.exp(-(u @ true_e + true_b)))
    scores = (rng.random(400) < p).astype(float)
    e, b = fit_model_vector(u, scores, np.delete(trained, 3, 0), np.delete(bias, 3), temperature=1.0)
    p_hat = 1 / (1 + np.exp(-(u @ e + b)))
    assert np.corrcoef(p, p_hat)[0, 1] > 0.9


def test_cold_start_prior_comes_from_the_models_of_the_probes_tables(tiny_predictor):
    import copy

    from pickwise.predictor.inference import MIN_REFERENCE_MODELS

    assert tiny_predictor.meta["model_tables"] == {m: ["synthetic"] for m in tiny_predictor.model_names}
    names = [f"m{j}" for j in range(8)]
    predictor = copy.copy(tiny_predictor)  # same artifact, with a made-up 8-model, two-table history
    predictor.model_names = names
    predictor.meta = dict(tiny_predictor.meta, model_tables={n: ["a"] if j < 5 else ["b"] for j, n in enumerate(names)})
    rng = np.random.default_rng(0)
    predictor._vectors = rng.normal(size=(8, 8))
    predictor._bias = rng.normal(size=8)
    assert MIN_REFERENCE_MODELS == 5
    np.testing.assert_array_equal(predictor.reference_models(["a"]), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(predictor.reference_models(["b"]), np.arange(8))  # 3 < 5 models: everyone
    np.testing.assert_array_equal(predictor.reference_models(["a", "b"]), np.arange(8))
    np.testing.assert_array_equal(predictor.reference_models(None), np.arange(8))
    u, y = rng.normal(size=(60, 8)), (rng.random(60) < 0.5).astype(float)
    e, b = predictor.fit_results(u, y, tables=["a"])
    e_ref, b_ref = fit_model_vector(u, y, predictor._vectors[:5], predictor._bias[:5], predictor.temperature)
    np.testing.assert_allclose(e, e_ref)
    assert b == pytest.approx(b_ref)
    e_all, _ = predictor.fit_results(u, y)
    assert not np.allclose(e, e_all)  # the prior really changed
    old = dict(predictor.meta)
    old.pop("model_tables")
    predictor.meta = old  # artifacts written before model_tables was recorded: every trained model
    np.testing.assert_array_equal(predictor.reference_models(["a"]), np.arange(8))


def test_row_split_matches_the_recorded_training_rows(tiny_artifact, tiny_predictor):
    from pickwise.predictor.artifact import read_splits

    table = synthetic_table()
    split = tiny_predictor.row_split(table)
    recorded = read_splits(tiny_artifact)["synthetic"]
    assert set(table.prompt_ids[split == "train"]) == set(recorded["train"])
    assert set(table.prompt_ids[split == "val"]) == set(recorded["val"])
    assert (split == "test").sum() > 0


@pytest.mark.parametrize("precision, tolerance", [("bf16", 0.05), ("int8", 0.15)])
def test_faster_precisions_stay_close_to_fp32(tiny_artifact, tiny_predictor, precision, tolerance):
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    fast = load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone(), precision=precision)
    prompts = ["What is 2 times 2 plus 3?", "Name the largest planet.", "def f(x): return x"]
    models = ["gpt-4-1106-preview", "Llama-2-7b-hf"]
    exact, approx = tiny_predictor.predict(prompts, models), fast.predict(prompts, models)
    assert approx.dtype == exact.dtype and np.abs(approx - exact).max() < tolerance
    assert fast.precision == precision and tiny_predictor.precision == "fp32"
    assert (fast.autocast is not None) == (precision == "bf16") and tiny_predictor.autocast is None


def test_unknown_precision_is_a_clear_error(tiny_artifact):
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    with pytest.raises(ValueError, match="precision must be one of"):
        load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone(), precision="fp8")


def test_auto_precision_is_onnx_int8_on_a_cpu_and_its_torch_fallback_bf16_only_with_native_bf16(monkeypatch):
    import pickwise.predictor.inference as inference

    for native in (True, False):
        monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda native=native: native)
        assert inference.resolve_precision("auto", "cpu") == "onnx-int8"
        assert inference.torch_precision("cpu") == ("bf16" if native else "fp32")
        assert inference.resolve_precision("auto", "cuda") == inference.torch_precision("cuda") == "fp32"
        assert inference.resolve_precision("int8", "cpu") == "int8"
