"""POST /v1/feedback over the real HTTP app: by decision id, by prompt, hashed, refused."""
from __future__ import annotations

import pytest

from pickwise.registry import load_registry
from pickwise.registry.outcomes import OutcomeStore, prompt_sha256
from tests.api_support import PROMPT, TOKEN, client, registry_with_alias

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "outcomes.sqlite"


@pytest.fixture
def api(tmp_path, tiny_predictor, store_path):
    registry = registry_with_alias(tmp_path / "registry", "gpt-4-1106-preview", "gpt4")
    with client(registry, tiny_predictor, outcome_store=str(store_path)) as c:
        yield c


def _stored(path):
    with OutcomeStore(path) as store:
        return list(store.outcomes())


def test_feedback_by_decision_id(api, store_path):
    decision = api.post("/v1/select", json={"prompt": PROMPT})
    assert decision.status_code == 200
    body = decision.json()
    assert len(body["decision_id"]) == 32
    r = api.post("/v1/feedback", json={"decision_id": body["decision_id"], "score": 1, "cost_usd": 0.001,
                                       "tags": {"app": "t"}}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["model"] == body["chosen"][0]
    [row] = _stored(store_path)
    assert (row.prompt, row.model, row.score, row.decision_id, row.tags, row.cost_usd) == (
        PROMPT, body["chosen"][0], 1.0, body["decision_id"], {"app": "t"}, 0.001)


def test_feedback_on_a_decision_counts_once(api, store_path):
    # a retried or corrected score replaces the earlier one: a fit must not count one call twice
    body = api.post("/v1/select", json={"prompt": PROMPT}).json()
    first = api.post("/v1/feedback", json={"decision_id": body["decision_id"], "score": 1}, headers=AUTH)
    again = api.post("/v1/feedback", json={"decision_id": body["decision_id"], "score": 0.25}, headers=AUTH)
    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert (first.json()["replaced"], again.json()["replaced"]) == (False, True)
    other = api.post("/v1/feedback", json={"prompt": PROMPT, "model": body["chosen"][0], "score": 0}, headers=AUTH)
    assert other.json()["replaced"] is False
    rows = _stored(store_path)
    assert sorted((r.decision_id is None, r.score) for r in rows) == [(False, 0.25), (True, 0.0)]


def test_feedback_by_prompt_resolves_aliases(api, store_path):
    r = api.post("/v1/feedback", json={"prompt": "What is 2+2?", "model": "gpt4", "score": 0.5}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["model"] == "gpt-4-1106-preview"
    assert [(o.prompt, o.model) for o in _stored(store_path)] == [("What is 2+2?", "gpt-4-1106-preview")]
    stats = api.get("/v1/outcomes/stats").json()
    assert stats["outcomes"] == 1 and "store" not in stats


def test_feedback_that_keeps_only_the_hash(api, store_path, tiny_predictor):
    r = api.post("/v1/feedback", json={"prompt": "private text", "model": "claude-v2", "score": 0.0,
                                       "keep_prompt": False}, headers=AUTH)
    assert r.status_code == 201, r.text
    [row] = _stored(store_path)
    assert row.prompt is None and row.prompt_sha256 == prompt_sha256("private text")
    assert len(row.prompt_vector) == tiny_predictor.model.config.dim
    assert row.vector_encoder == tiny_predictor.encoder_version
    decision = api.post("/v1/select", json={"prompt": "another private one"}).json()
    r = api.post("/v1/feedback", json={"decision_id": decision["decision_id"], "score": 1, "keep_prompt": False},
                 headers=AUTH)
    assert r.status_code == 201 and _stored(store_path)[1].prompt is None


@pytest.mark.parametrize("body, status, needle", [
    ({"decision_id": "0" * 32, "score": 1}, 404, "unknown decision"),
    ({"prompt": "x", "score": 1}, 422, "needs the model"),
    ({"decision_id": "abc", "prompt": "x", "model": "gpt4", "score": 1}, 422, "either decision_id or prompt"),
    ({"prompt": "x", "model": "nobody", "score": 1}, 422, "unknown model"),
    ({"prompt": "x", "model": "gpt4", "score": 1.5}, 422, "score"),
    ({"prompt": "x", "model": "gpt4", "score": "1"}, 422, "score"),
    ({"prompt": "x", "model": "gpt4", "score": 1, "colour": 1}, 422, "colour"),
])
def test_bad_feedback_is_refused(api, store_path, body, status, needle):
    r = api.post("/v1/feedback", json=body, headers=AUTH)
    assert r.status_code == status and needle in r.text, r.text
    assert not store_path.exists() or _stored(store_path) == []


def test_feedback_model_must_be_the_decisions(api):
    decision = api.post("/v1/select", json={"prompt": PROMPT}).json()
    other = next(c["name"] for c in decision["candidates"] if c["name"] != decision["chosen"][0])
    r = api.post("/v1/feedback", json={"decision_id": decision["decision_id"], "model": other, "score": 1},
                 headers=AUTH)
    assert r.status_code == 422 and "not what the decision chose" in r.text


def test_feedback_needs_a_token(api, tmp_path, tiny_predictor):
    body = {"prompt": "x", "model": "gpt4", "score": 1}
    assert api.post("/v1/feedback", json=body).status_code == 401
    assert api.post("/v1/feedback", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    registry = registry_with_alias(tmp_path / "r2", "gpt-4-1106-preview", "gpt4")
    with client(registry, tiny_predictor, admin_token=None, outcome_store=str(tmp_path / "x.sqlite")) as c:
        assert c.post("/v1/feedback", json=body, headers=AUTH).status_code == 403
    with client(registry, tiny_predictor, admin_token=None, feedback_token="fb",
                outcome_store=str(tmp_path / "x.sqlite")) as c:
        assert c.post("/v1/feedback", json=body, headers={"Authorization": "Bearer fb"}).status_code == 201


def test_feedback_over_http_reaches_the_next_refit(api, store_path, tmp_path, tiny_predictor):
    """Issue #24's 'done when': outcomes sent to /v1/feedback for a model registered by YAML alone are
    what `fit` learns it from; the refitted artifact scores it from them."""
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor
    from pickwise.predictor.refit import refit
    from pickwise.registry import load_registry
    from tests.api_support import UNTRAINED

    prompts = [f"{PROMPT} Variant {i}." for i in range(30)]
    for prompt in prompts:
        r = api.post("/v1/feedback", json={"prompt": prompt, "model": UNTRAINED, "score": 1.0}, headers=AUTH)
        assert r.status_code == 201, r.text
    snapshot = load_registry(tmp_path / "registry")
    spec = snapshot.get(UNTRAINED)
    before = tiny_predictor.model_vector(spec, snapshot)
    assert before.source == "population"
    with OutcomeStore(store_path) as store:
        report = refit(tiny_predictor, snapshot, store, tmp_path / "fitted", holdout=0.0)
    assert report["models"][UNTRAINED]["rows"] == len(prompts)
    fitted = load_predictor(tmp_path / "fitted", device="cpu", backbone=tiny_backbone())
    after = fitted.model_vector(spec, snapshot)
    assert after.source == "outcomes"
    u = tiny_predictor.prompt_features([PROMPT]).u
    # every outcome was a success: the refitted model is predicted to do better than the prior said
    assert fitted.probabilities(u, [after])[0, 0] > tiny_predictor.probabilities(u, [before])[0, 0] + 0.05


def _limit(tmp_path, name: str) -> int:
    return load_registry(tmp_path / "registry").get(name).max_output_tokens


def test_feedback_longer_than_the_model_may_answer_is_refused(api, store_path, tmp_path):
    """An answer longer than the registry's max_output_tokens no call could give: a length refit must not learn it."""
    limit = _limit(tmp_path, "gpt-4-1106-preview")
    r = api.post("/v1/feedback", json={"prompt": "What is 2+2?", "model": "gpt4", "score": 1,
                                       "output_tokens": 1_000_000_000}, headers=AUTH)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["errors"]] == [["body", "output_tokens"]]
    assert "gpt-4-1106-preview" in r.text and f"{limit:,}" in r.text
    assert not store_path.exists() or _stored(store_path) == []
    for tokens in (0, limit):
        r = api.post("/v1/feedback", json={"prompt": "What is 2+2?", "model": "gpt4", "score": 1,
                                           "output_tokens": tokens}, headers=AUTH)
        assert r.status_code == 201, r.text


def test_feedback_on_a_decision_longer_than_its_model_may_answer_keeps_the_earlier_row(api, store_path, tmp_path):
    decision = api.post("/v1/select", json={"prompt": PROMPT}).json()
    chosen = decision["chosen"][0]
    first = api.post("/v1/feedback", json={"decision_id": decision["decision_id"], "score": 1, "output_tokens": 50},
                     headers=AUTH)
    assert first.status_code == 201, first.text
    r = api.post("/v1/feedback", json={"decision_id": decision["decision_id"], "score": 0,
                                       "output_tokens": 1_000_000_000}, headers=AUTH)
    assert r.status_code == 422 and chosen in r.text and f"{_limit(tmp_path, chosen):,}" in r.text, r.text
    assert [(o.score, o.output_tokens) for o in _stored(store_path)] == [(1.0, 50)]


def test_feedback_with_a_non_finite_number_in_its_tags_is_refused(api, store_path):
    """Python's JSON reader takes NaN: stored, it made every later export write a line that is not JSON."""
    r = api.post("/v1/feedback", content='{"prompt": "x", "model": "gpt4", "score": 1, "tags": {"a": NaN}}',
                 headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "NaN or an infinity is not JSON (at tags.a)" in r.text, r.text
    assert not store_path.exists() or _stored(store_path) == []


@pytest.mark.parametrize("field, body", [
    ("prompt", '{"prompt": "x\\ud800", "model": "gpt4", "score": 1}'),
    ("tags", '{"prompt": "x", "model": "gpt4", "score": 1, "tags": {"k": "\\udc00"}}'),
])
def test_feedback_with_a_lone_surrogate_is_refused(api, store_path, field, body):
    """In the prompt it was a 500 (hashing it failed); in tags it was stored, and every later export of
    the store then failed to write it as UTF-8."""
    r = api.post("/v1/feedback", content=body, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "holds a lone surrogate" in r.text and field in r.text, r.text
    assert not store_path.exists() or _stored(store_path) == []
