"""One request never mixes two predictors, and model vectors are never served from the wrong one."""
from __future__ import annotations

import pytest

from pickwise.api.service import PickwiseService
from pickwise.registry import Registry
from tests.api_support import PROMPT, UNTRAINED, RecordingPredictor, client


def _fitted(predictor, bias: float = 2.0):
    """The predictor with UNTRAINED scored from a vector of its own (as `pickwise fit` would leave it)."""
    vector = predictor.trained_vectors[0].mean(0)
    return predictor.with_outcome_vectors({UNTRAINED: {"vector": vector.tolist(), "bias": bias, "rows": 500}})


def _quality(predictor, prompt: str, snapshot) -> float:
    """UNTRAINED's predicted quality on `prompt`."""
    f = predictor.prompt_features([prompt])
    vector = predictor.model_vector(snapshot.get(UNTRAINED), snapshot)
    return float(predictor.evidence(f.u, [vector], f.tasks, pooled=f.pooled).quality[0, 0])


def test_model_vectors_are_cached_per_predictor_not_only_per_registry_version(registry_dir, tiny_predictor):
    service = PickwiseService(Registry(registry_dir), tiny_predictor)
    snapshot = service.registry.snapshot
    assert service.scoring(snapshot).sources[UNTRAINED] == "population"
    fitted = _fitted(tiny_predictor)
    assert service.load_predictor(lambda: fitted) is None
    after = service.scoring(snapshot)  # same registry version, new predictor: its vectors, not the cached ones
    assert after.sources[UNTRAINED] == "outcomes" and after.predictor is fitted
    old = service.scoring(snapshot, tiny_predictor)  # a request still on the old predictor gets the old vectors
    assert old.sources[UNTRAINED] == "population"
    assert service.scoring(snapshot) is after  # ... and does not evict the serving predictor's


def test_a_request_decides_with_the_predictor_that_encoded_its_prompt(registry_dir, tiny_predictor):
    """A promotion that lands between a select's encoding and its decision must not mix the two."""
    new = RecordingPredictor(_fitted(tiny_predictor))
    new.version = "new-version"
    old = RecordingPredictor(tiny_predictor)
    old.version = "old-version"

    def encode_then_swap(prompts, **kwargs):
        features = tiny_predictor.prompt_features(prompts, **kwargs)
        if "swap" in prompts[0]:
            service._predictor = new  # what load_predictor's publish does, here at the worst moment
        return features

    old.prompt_features = encode_then_swap
    with client(registry_dir, old) as c:
        service = c.app.state.pickwise.service
        body = c.post("/v1/select", json={"prompt": "swap " + PROMPT}).json()
        assert body["predictor_version"] == "old-version"
        untrained = next(x for x in body["candidates"] if x["name"] == UNTRAINED)
        snapshot = service.registry.snapshot
        assert untrained["quality"] == pytest.approx(_quality(tiny_predictor, "swap " + PROMPT, snapshot), abs=1e-6)
        assert untrained["quality"] != pytest.approx(_quality(new, "swap " + PROMPT, snapshot), abs=1e-3)
        assert service.decisions.get(body["decision_id"]).encoder == tiny_predictor.encoder_version
        assert c.post("/v1/select", json={"prompt": PROMPT}).json()["predictor_version"] == "new-version"
