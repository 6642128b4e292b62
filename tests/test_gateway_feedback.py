"""Gateway calls feed the outcome loop: the official OpenAI SDK calls pickwise (uvicorn, loopback), which
forwards to a loopback upstream; the decision id from the response header then scores the answer over
POST /v1/feedback, and the outcome stored holds the model that answered and its output tokens."""
from __future__ import annotations

import time

import httpx
import openai
import pytest

from bench.openai_upstream import Upstream
from pickwise.api.http.telemetry import sample_total
from pickwise.registry.outcomes import OutcomeStore
from tests.api_support import TOKEN
from tests.gateway_support import KEY_ENV, SERVED, UPSTREAM_KEY, pickwise_server, served_registry

AUTO = "pickwise/auto"
QUESTION = [{"role": "user", "content": "Which of these numbers is prime? A) 4 B) 6 C) 7 D) 9"}]
WORDS = {"provider-cheap": 3, "mid": 11}  # the upstream's answer lengths (its usage counts words)


@pytest.fixture
def gateway(tmp_path, tiny_predictor, monkeypatch):
    """(pickwise's base URL, the upstream, the store's path)."""
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    store = tmp_path / "outcomes.sqlite"
    answer = lambda model, messages: " ".join(["word"] * WORDS.get(model, 5))  # noqa: E731
    with Upstream(key=UPSTREAM_KEY, answer=answer).running() as up:
        vision = {name: {"capabilities": ["vision"]} for name in SERVED}  # one test sends an image alone
        registry = served_registry(tmp_path / "registry", up.base_url, fields=vision)
        with pickwise_server(registry, tiny_predictor, outcome_store=str(store)) as url:
            yield url, up, store


def _sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/openai/v1", api_key="unused", max_retries=0)


def _feedback(url: str, **body) -> httpx.Response:
    return httpx.post(url + "/v1/feedback", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def _outcomes(path):
    with OutcomeStore(path) as store:
        return list(store.outcomes())


def test_feedback_on_a_routed_call_scores_the_model_that_answered(gateway):
    url, up, store = gateway
    up.behave("provider-cheap", "status", status=503)  # 'down' refuses connections: 'mid' answers
    raw = _sdk(url).chat.completions.with_raw_response.create(model=AUTO, messages=QUESTION)
    completion = raw.parse()
    assert raw.headers["x-pickwise-attempts"] == "cheap,down,mid"
    assert completion.usage.completion_tokens == 11 and completion.model == "mid"  # the upstream's body as sent
    decision_id = raw.headers["x-pickwise-decision-id"]

    wrong = _feedback(url, decision_id=decision_id, model="cheap", score=1)
    assert wrong.status_code == 422 and "not the model that answered" in wrong.text
    r = _feedback(url, decision_id=decision_id, score=0.75)
    assert r.status_code == 201, r.text
    assert r.json()["model"] == "mid"
    [row] = _outcomes(store)
    assert (row.model, row.score, row.output_tokens, row.decision_id) == ("mid", 0.75, 11, decision_id)
    assert row.prompt == QUESTION[0]["content"] and row.latency_ms > 0


def _list_cost(model: str, usage) -> float:
    """What SERVED's list prices charge for `usage` (input at the model's price, output at twice it)."""
    price = SERVED[model][0]
    return (usage.prompt_tokens * price + usage.completion_tokens * 2 * price) / 1e6


def test_a_call_says_what_it_cost_and_feedback_keeps_it(gateway):
    url, up, store = gateway
    up.behave("provider-cheap", "status", status=503)
    raw = _sdk(url).chat.completions.with_raw_response.create(model=AUTO, messages=QUESTION)
    usage = raw.parse().usage
    cost = _list_cost("mid", usage)  # 'mid' answered: the failed attempts cost nothing
    assert float(raw.headers["x-pickwise-cost-usd"]) == pytest.approx(cost, rel=1e-6)
    assert _feedback(url, decision_id=raw.headers["x-pickwise-decision-id"], score=1).status_code == 201
    [row] = _outcomes(store)
    assert row.cost_usd == pytest.approx(cost)
    metrics = httpx.get(url + "/metrics", timeout=5).text
    assert sample_total(metrics, "pickwise_upstream_cost_usd_total", model="mid") == pytest.approx(cost)


def test_feedback_may_give_its_own_cost_and_a_stream_keeps_its_cost(gateway):
    url, _, store = gateway
    raw = _sdk(url).chat.completions.with_raw_response.create(model=AUTO, messages=QUESTION)
    r = _feedback(url, decision_id=raw.headers["x-pickwise-decision-id"], score=1, cost_usd=0.5)
    assert r.status_code == 201, r.text
    with _sdk(url).chat.completions.with_streaming_response.create(
            model=AUTO, messages=QUESTION, stream=True, stream_options={"include_usage": True}) as streamed:
        usage = list(streamed.parse())[-1].usage
        decision_id, model = streamed.headers["x-pickwise-decision-id"], streamed.headers["x-pickwise-model"]
        assert "x-pickwise-cost-usd" not in streamed.headers  # sent before the stream's usage exists
    deadline = time.monotonic() + 5
    while (r := _feedback(url, decision_id=decision_id, score=1)).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 201, r.text
    first, second = _outcomes(store)
    assert first.cost_usd == 0.5
    assert second.cost_usd == pytest.approx(_list_cost(model, usage))


@pytest.mark.parametrize("include_usage, tokens", [(True, 3), (False, None)])
def test_a_streamed_call_records_its_usage_when_the_upstream_sends_it(gateway, include_usage, tokens):
    url, up, store = gateway
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with _sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION, stream=True,
                                                                    **options) as raw:
        text = "".join(c.delta.content or "" for chunk in raw.parse() for c in chunk.choices)
        decision_id = raw.headers["x-pickwise-decision-id"]
    assert text == "word word word"
    # kept when the server's side of the stream ends, which may be just after the SDK has read [DONE]
    deadline = time.monotonic() + 5
    while (r := _feedback(url, decision_id=decision_id, score=1)).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 201, r.text
    [row] = _outcomes(store)
    assert (row.model, row.output_tokens) == ("cheap", tokens)


def test_an_outcome_of_n_answers_records_one_answers_length(gateway):
    # usage.completion_tokens counts all n answers; a length vector fitted to that would price every
    # later single answer n times too long
    url, _, store = gateway
    raw = _sdk(url).chat.completions.with_raw_response.create(model=AUTO, messages=QUESTION, n=3)
    completion = raw.parse()
    assert len(completion.choices) == 3 and completion.usage.completion_tokens == 3 * WORDS[completion.model]
    r = _feedback(url, decision_id=raw.headers["x-pickwise-decision-id"], score=1)
    assert r.status_code == 201, r.text
    assert [o.output_tokens for o in _outcomes(store)] == [WORDS[completion.model]]


def test_feedback_may_give_its_own_length(gateway):
    url, _, store = gateway
    raw = _sdk(url).chat.completions.with_raw_response.create(model=AUTO, messages=QUESTION)
    r = _feedback(url, decision_id=raw.headers["x-pickwise-decision-id"], score=1, output_tokens=40)
    assert r.status_code == 201, r.text
    assert [o.output_tokens for o in _outcomes(store)] == [40]


def test_calls_that_route_nothing_or_answer_nothing_keep_no_decision(gateway):
    url, up, store = gateway
    named = _sdk(url).chat.completions.with_raw_response.create(model="mid", messages=QUESTION)
    up.default.kind, up.default.status = "status", 503
    with pytest.raises(openai.InternalServerError) as failed:
        _sdk(url).chat.completions.create(model=AUTO, messages=QUESTION)
    for decision_id in (named.headers["x-pickwise-decision-id"],
                        failed.value.response.headers["x-pickwise-decision-id"]):
        r = _feedback(url, decision_id=decision_id, score=1)
        assert r.status_code == 404 and "unknown decision" in r.text
        # the id came from a header a second ago: 'kept for 7 days' alone would send the caller hunting
        assert "a gateway call naming its model, or answered by none, keeps none" in r.json()["detail"]


def test_a_stream_cut_midway_keeps_no_decision(gateway):
    # the caller got part of an answer: a score of it would grade the connection, not the model, and
    # its time would be the time to the cut
    url, up, _ = gateway
    up.behave("provider-cheap", "cut", cut_after=2)
    with pytest.raises(openai.APIError, match="failed midway"):
        with _sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION,
                                                                        stream=True) as raw:
            cut = raw.headers["x-pickwise-decision-id"]
            for _ in raw.parse():
                pass
    up.behave("provider-cheap")
    with _sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION, stream=True) as raw:
        whole = raw.headers["x-pickwise-decision-id"]
        for _ in raw.parse():
            pass
    deadline = time.monotonic() + 5  # the whole one is kept as its server side ends, after the cut one's
    while (r := _feedback(url, decision_id=whole, score=1)).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 201, r.text
    assert _feedback(url, decision_id=cut, score=0).status_code == 404


def test_a_conversation_without_text_keeps_no_decision(gateway):
    # routed on the gateway's stand-in for no text; an outcome of that stand-in would teach a refit about
    # a prompt nobody sent, as the front doors refusing blank prompts say
    url, _, store = gateway
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    raw = _sdk(url).chat.completions.with_raw_response.create(model=AUTO, messages=image)
    assert raw.parse().choices[0].message.content
    r = _feedback(url, decision_id=raw.headers["x-pickwise-decision-id"], score=1)
    assert r.status_code == 404 and "unknown decision" in r.text
    assert _outcomes(store) == []
