"""Integration: the committed default artifact loads on the real MiniLM backbone and scores prompts."""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.predictor.artifact import default_artifact_dir, read_meta
from pickwise.registry import default_registry_dir, load_registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shipped():
    from pickwise.predictor.inference import load_predictor

    return load_predictor()


def test_shipped_artifact_covers_every_default_registry_model():
    meta = read_meta(default_artifact_dir())
    trained = set(meta["model_names"]) | set(meta["aliases"])
    snapshot = load_registry(default_registry_dir())
    assert all(any(n in trained for n in spec.all_names()) for spec in snapshot.models)
    assert meta["validation"]["ece"] <= 0.03
    size = sum(p.stat().st_size for p in default_artifact_dir().rglob("*") if p.is_file())
    assert size < 7_000_000  # adapter + heads + the detector's 3.07 MB bank, never merged weights


def test_shipped_predictor_scores_prompts(shipped):
    snapshot = load_registry(default_registry_dir())
    models = list(snapshot.enabled())
    prompts = [
        "What is 17 * 23? Answer with the number only.",
        "Write a Python function that checks whether a string is a palindrome.",
        "Which of the following is a prime number?\nA) 21\nB) 27\nC) 29\nD) 33",
    ]
    q = shipped.predict(prompts, models, snapshot=snapshot)
    assert q.shape == (3, len(models)) and np.all((q > 0) & (q < 1))
    assert shipped.low_confidence(models, snapshot) == {}
    # a frontier model is predicted to beat a 2023 7B base model on average
    names = [m.name for m in models]
    assert q[:, names.index("gpt-4-1106-preview")].mean() > q[:, names.index("Llama-2-7b-hf")].mean()


def test_shipped_cold_start_prior_uses_the_probe_tables_models(shipped):
    """MMLU-Pro probe results are fitted under a prior from the 25 MMLU-Pro models only."""
    from pickwise.registry.probes.probe_set import load_probe_set

    mmlu_pro = [shipped.model_names[j] for j in shipped.reference_models({"mmlu_pro_25models"})]
    assert len(mmlu_pro) == 25 and "gemini-1.5-flash-002" in mmlu_pro and "gpt-4-1106-preview" not in mmlu_pro
    entries = [e for e in load_probe_set() if e.table == "mmlu_pro_25models"][:60]
    scores = {e.prompt_id: float(i % 3 == 0) for i, e in enumerate(entries)}
    ids, u = shipped.probe_vectors()
    rows = [ids.index(pid) for pid in scores]
    assert np.allclose(shipped.fit_probe(scores)[0],
                       shipped.fit_results(u[rows], np.array(list(scores.values())), tables={"mmlu_pro_25models"})[0])
    assert not np.allclose(shipped.fit_probe(scores)[0], shipped.fit_results(u[rows], np.array(list(scores.values())))[0])


def test_loading_and_reading_a_long_prompt_print_nothing_to_stderr(capfd):
    """No weight-loading progress bar, no peft deprecation notice, no 'indexing errors' warning for a
    prompt longer than MiniLM's 512 positions (it is cut head + tail before the model sees it)."""
    import warnings

    from pickwise.predictor.artifact import load_model
    from pickwise.predictor.backbone import encode_texts, load_backbone, load_tokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # show what the default filters would hide after a first time
        model, _ = load_model(default_artifact_dir(), load_backbone())
        encoded = encode_texts(load_tokenizer(), ["word " * 3000], model.config.max_len, model.config.head_frac)
    assert encoded.truncated == [True] and len(encoded.ids[0]) == model.config.max_len
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "is_gradient_checkpointing" not in err and "indexing errors" not in err, err
