"""Feedback by decision id over the real HTTP app, with decisions in a real store (a file; for a restart
and replicas, a real Postgres server too): after a restart, from another replica on the same store,
without prompt text, and the 404 for an unknown id."""
from __future__ import annotations

import pytest

from pickwise.registry.outcomes import OutcomeStore, prompt_sha256
from tests.api_support import PROMPT, TOKEN, client, registry_with_alias

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "outcomes.sqlite"


@pytest.fixture
def registry(tmp_path):
    return registry_with_alias(tmp_path / "registry", "gpt-4-1106-preview", "gpt4")


def _stored(path):
    with OutcomeStore(path) as store:
        return list(store.outcomes())


def test_feedback_after_a_restart(registry, tiny_predictor, new_store):
    store_path = new_store()
    with client(registry, tiny_predictor, outcome_store=str(store_path)) as before:
        decision = before.post("/v1/select", json={"prompt": PROMPT}).json()
    with client(registry, tiny_predictor, outcome_store=str(store_path)) as after:  # a new service, same store
        r = after.post("/v1/feedback", json={"decision_id": decision["decision_id"], "score": 1}, headers=AUTH)
    assert r.status_code == 201, r.text
    [row] = _stored(store_path)
    assert (row.prompt, row.model, row.decision_id) == (PROMPT, decision["chosen"][0], decision["decision_id"])


def test_feedback_on_another_replica(registry, tiny_predictor, new_store):
    store_path = new_store()
    with client(registry, tiny_predictor, outcome_store=str(store_path)) as a, \
            client(registry, tiny_predictor, outcome_store=str(store_path)) as b:
        decision = a.post("/v1/select", json={"prompt": PROMPT}).json()
        a.app.state.pickwise.service.decisions.flush()  # committed: what another process can read
        r = b.post("/v1/feedback", json={"decision_id": decision["decision_id"], "score": 0.5}, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json()["model"] == decision["chosen"][0]
    assert [o.decision_id for o in _stored(store_path)] == [decision["decision_id"]]


@pytest.mark.parametrize("decision_id", ["0" * 32, "not-a-decision"])
def test_an_unknown_decision_is_404_saying_how_long_they_are_kept(registry, tiny_predictor, store_path, decision_id):
    with client(registry, tiny_predictor, outcome_store=str(store_path), decision_keep_s=2 * 86400,
                decision_max=5000) as api:
        api.post("/v1/select", json={"prompt": PROMPT})  # the store exists and holds another decision
        r = api.post("/v1/feedback", json={"decision_id": decision_id, "score": 1}, headers=AUTH)
    assert r.status_code == 404
    assert r.json()["detail"] == (f"unknown decision {decision_id!r}: decisions are kept in the outcome store for "
                                  "2 day(s), at most 5,000 (a gateway call naming its model, or answered by none, "
                                  "keeps none); send the prompt and model instead")


def test_a_server_that_keeps_no_prompt_text(registry, tiny_predictor, store_path):
    with client(registry, tiny_predictor, outcome_store=str(store_path), decision_keep_prompt=False) as api:
        decision = api.post("/v1/select", json={"prompt": "private text"}).json()
        api.app.state.pickwise.service.decisions.flush()
        assert api.app.state.pickwise.service.decisions.get(decision["decision_id"]).prompt is None
        r = api.post("/v1/feedback", json={"decision_id": decision["decision_id"], "score": 1}, headers=AUTH)
    assert r.status_code == 201 and r.json()["prompt_kept"] is False
    [row] = _stored(store_path)
    assert row.prompt is None and row.prompt_sha256 == prompt_sha256("private text")
    assert len(row.prompt_vector) == tiny_predictor.model.config.dim
    assert row.vector_encoder == tiny_predictor.encoder_version
