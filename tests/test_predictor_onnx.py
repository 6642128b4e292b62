"""The ONNX Runtime int8 encoder: the export reproduces torch, int8 stays close, the cache is reused."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pickwise.predictor import onnx_encoder
from pickwise.predictor.backbone import pad_batch, tiny_backbone

PROMPTS = ["What is 2 times 2 plus 3?", "Name the largest planet.", "def f(x): return x", "", "word " * 400]
MODELS = ["gpt-4-1106-preview", "Llama-2-7b-hf"]


@pytest.fixture()
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(onnx_encoder.CACHE_ENV, str(tmp_path))
    return tmp_path


def tiny_model(tiny_artifact):
    from pickwise.predictor.artifact import load_model

    return load_model(tiny_artifact, tiny_backbone(), merge=True)[0].eval()


def test_exported_graph_reproduces_torch_on_a_padded_batch(tiny_artifact, tmp_path):
    model = tiny_model(tiny_artifact)
    onnx_encoder.export_prompt_encoder(model, tmp_path / "fp32.onnx")
    graph = onnx_encoder.OnnxPromptEncoder(tmp_path / "fp32.onnx", threads=1)
    # lengths and a batch size other than the export's sample (2 x 16): the axes must be dynamic
    ids, mask = pad_batch([list(range(5, 5 + n)) for n in (3, 40, 9)])
    with torch.no_grad():
        expected = model.prompt_vectors(model.top(model.stem(ids, mask), mask))
    np.testing.assert_allclose(graph(ids, mask), expected.numpy(), atol=1e-5)


def test_int8_quantises_the_backbone_and_keeps_the_prompt_head_float(tiny_artifact, tmp_path):
    import onnx

    model = tiny_model(tiny_artifact)
    graph = onnx.load(str(onnx_encoder.build_graph(model, tmp_path))).graph
    types = {init.name: init.data_type for init in graph.initializer}
    head = onnx_encoder.head_initializers(model)
    # the quantiser may rename a weight (a Gemm's becomes "<name>_Transposed") but must not quantise it
    from_head = {name: t for name, t in types.items() if any(name.startswith(h) for h in head)}
    linears = [f"model.{name}.weight" for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.startswith(("tasks.", "head."))]
    assert linears and all(any(n.startswith(w) for n in from_head) for w in linears)
    assert set(from_head.values()) == {onnx.TensorProto.FLOAT}
    assert any(t == onnx.TensorProto.INT8 for t in types.values())
    assert not (tmp_path / "prompt_encoder_fp32.onnx").exists()


def test_onnx_int8_predictor_stays_close_to_fp32_and_reports_itself(tiny_artifact, tiny_predictor, onnx_cache):
    from pickwise.predictor.inference import load_predictor

    fast = load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone(), precision="onnx-int8")
    exact, approx = tiny_predictor.predict(PROMPTS, MODELS), fast.predict(PROMPTS, MODELS)
    assert approx.shape == exact.shape and np.abs(approx - exact).max() < 0.15
    assert not np.array_equal(approx, exact)  # the int8 graph really ran, not the torch encoder
    assert fast.precision == "onnx-int8" and fast.prompt_encoder is not None and fast.autocast is None
    assert fast.model.encoder is None  # the torch weights the graph replaces are not kept in memory
    assert fast.predict_detailed(PROMPTS, MODELS)[1] == tiny_predictor.predict_detailed(PROMPTS, MODELS)[1]
    # the one-thread session is the same graph: the same vectors, and as many lanes as threads
    assert fast.parallel_lanes == fast.prompt_encoder.threads and tiny_predictor.parallel_lanes == 1
    np.testing.assert_allclose(fast.prompt_vectors(PROMPTS, single_thread=True)[0], fast.prompt_vectors(PROMPTS)[0],
                               atol=1e-5)


def test_the_service_runs_as_many_lanes_as_the_onnx_encoder_has_threads_unless_capped(tiny_artifact, onnx_cache,
                                                                                     registry_dir):
    from pickwise.predictor.inference import load_predictor
    from tests.api_support import PROMPT, client

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast = load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone(), precision="onnx-int8")
    finally:
        torch.set_num_threads(torch_threads)
    for cap, lanes in ((None, 2), (1, 1), (5, 2)):
        with client(registry_dir, fast, encoder_lanes=cap) as c:
            assert c.post("/v1/select", json={"prompt": PROMPT}).status_code == 200
            assert c.app.state.pickwise.batcher.lanes == lanes


def test_the_int8_graph_is_cached_by_weights(tiny_artifact, onnx_cache, monkeypatch):
    model = tiny_model(tiny_artifact)
    first = onnx_encoder.int8_prompt_encoder(model, threads=1)
    assert [p.name for p in onnx_cache.iterdir()] == [onnx_encoder.weights_key(model)]

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this encoder")

    monkeypatch.setattr(onnx_encoder, "export_prompt_encoder", no_export)
    ids, mask = pad_batch([[7, 8, 9, 10]])
    again = onnx_encoder.int8_prompt_encoder(model, threads=1)
    np.testing.assert_array_equal(again(ids, mask), first(ids, mask))

    with torch.no_grad():  # other weights: another key, so a retrained artifact never gets a stale graph
        next(model.bert.parameters()).add_(0.01)
    with pytest.raises(RuntimeError, match="exported again"):
        onnx_encoder.int8_prompt_encoder(model, threads=1)


def test_a_failed_export_names_the_cause_and_the_way_out_and_leaves_no_cache(tiny_artifact, onnx_cache, monkeypatch):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'onnxscript'")

    monkeypatch.setattr(onnx_encoder, "export_prompt_encoder", broken)
    with pytest.raises(RuntimeError, match=r"ImportError: No module named 'onnxscript'.*use precision bf16 or fp32"):
        onnx_encoder.int8_prompt_encoder(tiny_model(tiny_artifact), threads=1)
    assert list(onnx_cache.iterdir()) == []


def test_auto_runs_onnx_int8_on_a_cpu_and_falls_back_to_torch_if_the_export_fails(tiny_artifact, onnx_cache,
                                                                                  monkeypatch, caplog):
    from pickwise.predictor import inference

    fast = inference.load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone(), precision="auto")
    assert fast.precision == "onnx-int8" and fast.prompt_encoder is not None

    def broken(*args, **kwargs):
        raise ImportError("No module named 'onnxscript'")

    monkeypatch.setattr(onnx_encoder, "export_prompt_encoder", broken)
    monkeypatch.setenv(onnx_encoder.CACHE_ENV, str(onnx_cache / "empty"))  # no cached graph to fall back on
    monkeypatch.setattr(inference, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="pickwise.predictor"):
        fallback = inference.load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone(), precision="auto")
    assert fallback.precision == "bf16" and fallback.prompt_encoder is None and fallback.autocast == torch.bfloat16
    assert "int8 ONNX encoder is unavailable (RuntimeError" in caplog.text and "in bf16 instead" in caplog.text
    assert fallback.predict(PROMPTS[:2], MODELS).shape == (2, 2)
    with pytest.raises(RuntimeError, match="use precision bf16 or fp32"):  # asked for by name: no fallback
        inference.load_predictor(tiny_artifact, device="cpu", backbone=tiny_backbone(), precision="onnx-int8")


def test_onnx_int8_is_cpu_only(tiny_artifact):
    from pickwise.predictor.inference import load_predictor

    with pytest.raises(ValueError, match="onnx-int8 runs the encoder on the CPU only"):
        load_predictor(tiny_artifact, device="cuda", backbone=tiny_backbone(), precision="onnx-int8")


def test_the_cache_keeps_the_most_recently_used_encoders(tmp_path):
    def entry(name: str, used: float):
        (tmp_path / name).mkdir()
        (tmp_path / name / onnx_encoder.GRAPH_FILE).write_bytes(b"graph")
        os.utime(tmp_path / name, (used, used))

    for k in range(6):
        entry(f"{k:024x}", used=1_000_000 + k)
    (tmp_path / ".export-abc").mkdir()  # another process's export in progress
    removed = onnx_encoder.prune_cache(tmp_path, keep=4)
    assert sorted(p.name for p in removed) == [f"{0:024x}", f"{1:024x}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".export-abc"] + [f"{k:024x}" for k in range(2, 6)]


def test_a_cache_hit_counts_as_a_use(tiny_artifact, onnx_cache):
    model = tiny_model(tiny_artifact)
    onnx_encoder.int8_prompt_encoder(model, threads=1)
    entry = onnx_cache / onnx_encoder.weights_key(model)
    os.utime(entry, (1_000_000, 1_000_000))
    onnx_encoder.int8_prompt_encoder(model, threads=1)
    assert entry.stat().st_mtime > 1_000_000


def test_a_damaged_cached_graph_is_built_again(tiny_artifact, onnx_cache, caplog):
    model = tiny_model(tiny_artifact)
    graph = onnx_cache / onnx_encoder.weights_key(model) / onnx_encoder.GRAPH_FILE
    graph.parent.mkdir()
    graph.write_bytes(b"not an onnx graph")  # e.g. a disk that filled up while another tool wrote here
    ids, mask = pad_batch([[7, 8, 9, 10]])
    encoder = onnx_encoder.int8_prompt_encoder(model, threads=1)
    assert encoder(ids, mask).shape == (1, model.config.dim)
    assert "cannot be loaded" in caplog.text
    assert graph.read_bytes() != b"not an onnx graph"  # replaced by the new export


@pytest.mark.integration
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "onnx-int8"])
def test_a_prompts_scores_do_not_depend_on_its_batch(precision):
    """Dynamic int8 quantisation scales a whole batch's activations at once: encoded in a batch, a
    prompt's scores moved with its batch-mates (by up to 0.4 on the shipped artifact), so a decision
    near a floor flipped with traffic."""
    from pickwise.predictor.inference import load_predictor
    from pickwise.registry import default_registry_dir, load_registry

    snapshot = load_registry(default_registry_dir())
    models = list(snapshot.enabled())
    predictor = load_predictor(precision=precision)
    batch = ["hi, how are you?", "Write a sonnet about the sea.", "Solve 3x + 7 = 22.", "word " * 300,
             "Which of these numbers is prime? A) 4 B) 6 C) 7 D) 9", "Explain a lease versus a licence."]
    together = predictor.predict(batch, models, snapshot=snapshot, batch_size=32)
    for i, prompt in enumerate(batch):
        alone = predictor.predict([prompt], models, snapshot=snapshot)
        np.testing.assert_allclose(alone[0], together[i], rtol=0, atol=1e-6)
