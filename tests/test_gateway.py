"""The OpenAI-compatible gateway end to end: the official OpenAI SDK, unmodified, against pickwise
(uvicorn on loopback), forwarding to a loopback OpenAI-compatible upstream told to answer, fail or hang."""
from __future__ import annotations

import logging
import threading
import time

import httpx
import openai
import pytest

from bench.openai_upstream import Upstream
from pickwise.api.http.telemetry import sample_total
from tests.gateway_support import KEY_ENV, UPSTREAM_KEY, pickwise_server, served_registry

AUTO = "pickwise/auto"
QUESTION = [{"role": "user", "content": "Which of these numbers is prime? A) 4 B) 6 C) 7 D) 9"}]


@pytest.fixture
def upstream():
    with Upstream(key=UPSTREAM_KEY).running() as up:
        yield up


@pytest.fixture
def gateway(tmp_path, upstream, tiny_predictor, monkeypatch):
    """(the pickwise base URL, the upstream) with every SERVED model behind the upstream."""
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    registry = served_registry(tmp_path / "registry", upstream.base_url)
    with pickwise_server(registry, tiny_predictor) as url:
        yield url, upstream


def sdk(url: str, key: str = "unused", **options) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/openai/v1", api_key=key, **{"max_retries": 0, **options})


def create(client: openai.OpenAI, model: str = AUTO, messages=QUESTION, **kwargs):
    """The SDK's raw response (headers too) and its parsed completion."""
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, **kwargs)
    return raw, raw.parse()


# ---- routed and pass-through -------------------------------------------------------------------
def test_routed_call_answers_from_the_decisions_model(gateway):
    url, up = gateway
    raw, completion = create(sdk(url))
    # min_cost, no floor: the cheapest served model; the upstream knows it by its own name
    assert raw.headers["x-pickwise-model"] == "cheap"
    assert raw.headers["x-pickwise-attempts"] == "cheap"
    assert len(raw.headers["x-pickwise-decision-id"]) == 32
    assert completion.choices[0].message.content == "Hello from provider-cheap. The answer is (A)."
    assert up.calls() == ["provider-cheap"]
    forwarded = up.seen[0].body
    assert "pickwise" not in forwarded and forwarded["messages"] == QUESTION


def test_constraints_come_through_extra_body(gateway):
    url, up = gateway
    raw, _ = create(sdk(url), extra_body={"pickwise": {"objective": "max_quality", "exclude": ["dear"]}},
                    temperature=0.2, max_tokens=7)
    assert raw.headers["x-pickwise-model"] == "mid"  # the best left once 'dear' is excluded ('down' scores 0.5)
    assert up.seen[-1].body["temperature"] == 0.2 and up.seen[-1].body["max_tokens"] == 7
    raw, _ = create(sdk(url), extra_body={"pickwise": {"models": ["dear", "mid"]}})
    assert raw.headers["x-pickwise-model"] == "mid"


def test_pass_through_by_name_is_not_routed(gateway):
    url, up = gateway
    raw, completion = create(sdk(url), model="dear")
    assert raw.headers["x-pickwise-model"] == "dear" and raw.headers["x-pickwise-attempts"] == "dear"
    assert completion.model == "dear"
    assert up.calls() == ["dear"]


def test_models_list_has_auto_and_every_served_model(gateway):
    url, _ = gateway
    ids = [m.id for m in sdk(url).models.list()]
    assert ids == [AUTO, "cheap", "dear", "down", "mid"]  # never the models without an endpoint


def test_one_model_is_retrieved_as_openai_lists_it(gateway):
    # the SDK's models.retrieve(), which OpenAI clients call to check a model before using it
    url, _ = gateway
    client = sdk(url)
    assert (client.models.retrieve("cheap").id, client.models.retrieve("cheap").owned_by) == ("cheap", "acme")
    assert client.models.retrieve(AUTO).id == AUTO  # a name with a slash, percent-encoded by the SDK
    with pytest.raises(openai.NotFoundError, match="no endpoint"):
        client.models.retrieve("gpt-4-1106-preview")
    with pytest.raises(openai.NotFoundError, match="did you mean 'cheap'"):
        client.models.retrieve("Cheap")


def test_errors_take_openais_shape(gateway):
    url, _ = gateway
    client = sdk(url)
    with pytest.raises(openai.NotFoundError) as missing:
        create(client, model="no-such-model")
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError, match="did you mean 'cheap'"):
        create(client, model="Cheap")
    with pytest.raises(openai.NotFoundError, match="no endpoint"):
        create(client, model="gpt-4-1106-preview")  # registered, but served by nobody
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        create(client, extra_body={"pickwise": {"min_qualty": 0.5}})
    assert bad.value.body["param"] == "pickwise.min_qualty"
    with pytest.raises(openai.UnprocessableEntityError, match="pickwise.models"):
        create(client, extra_body={"pickwise": {"models": ["gpt-4-1106-preview"]}})
    raw = httpx.post(url + "/openai/v1/chat/completions", content=b"{not json", timeout=5)
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    huge = httpx.post(url + "/openai/v1/chat/completions", content=b"x" * (9 * 1024 * 1024), timeout=10)
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"


def test_null_fields_are_unset_as_openai_reads_them(gateway):
    # typed clients send every optional field, null when unset: OpenAI takes "stream": null as no stream
    url, up = gateway
    body = {"model": AUTO, "messages": QUESTION, "stream": None, "pickwise": None, "n": None, "max_tokens": None}
    answer = httpx.post(url + "/openai/v1/chat/completions", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json") and answer.headers["x-pickwise-model"] == "cheap"
    named = httpx.post(url + "/openai/v1/chat/completions", json={**body, "model": "mid"}, timeout=10)
    assert named.status_code == 200, named.text


def test_did_you_mean_names_only_models_the_gateway_can_call(gateway):
    """A suggestion must work when followed: never a registered model without an endpoint (or disabled)."""
    url, _ = gateway
    client = sdk(url)
    with pytest.raises(openai.NotFoundError) as unserved:
        create(client, model="gpt-4")  # registered as gpt-4-1106-preview, which has no endpoint here
    assert "gpt-4-1106-preview" not in unserved.value.message and "did you mean" not in unserved.value.message
    with pytest.raises(openai.NotFoundError, match="did you mean 'dear'"):
        create(client, model="deer")
    with pytest.raises(openai.NotFoundError, match="did you mean 'pickwise/auto'"):
        create(client, model="auto")
    with pytest.raises(openai.UnprocessableEntityError) as allow_list:
        create(client, extra_body={"pickwise": {"models": ["gpt-4"]}})
    assert "gpt-4-1106-preview" not in allow_list.value.message


def test_infeasible_is_409_and_not_retried_by_the_sdk(gateway):
    url, up = gateway
    client = openai.OpenAI(base_url=url + "/openai/v1", api_key="unused", max_retries=2)
    started = time.monotonic()
    with pytest.raises(openai.ConflictError) as infeasible:
        create(client, extra_body={"pickwise": {"max_cost_usd": 0.0}})
    assert time.monotonic() - started < 0.5  # no backoff-and-retry: x-should-retry: false
    assert set(infeasible.value.body["blocking"]) == {"cheap", "down", "mid", "dear"}
    # the sentence counts the models the gateway could call, not the unserved ones as "not in allow-list"
    message = infeasible.value.body["message"]
    assert message.startswith("no model satisfies the constraints (4 models; ruled out by cost cap 4)"), message
    assert up.calls() == []


# ---- streaming ---------------------------------------------------------------------------------
def test_streams_pass_through_as_they_arrive(gateway):
    url, up = gateway
    up.behave("provider-cheap", event_gap_s=0.15)
    started = time.monotonic()
    arrivals, text = [], ""
    with sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION, stream=True) as raw:
        assert raw.headers["x-pickwise-model"] == "cheap"
        for chunk in raw.parse():
            arrivals.append(time.monotonic() - started)
            text += "".join(c.delta.content or "" for c in chunk.choices)
    assert text == "Hello from provider-cheap. The answer is (A)."
    # 8 events 0.15 s apart: the first arrives long before the last is sent (nothing is buffered)
    assert arrivals[0] < 0.6 and arrivals[-1] - arrivals[0] > 0.8


def test_stream_usage_is_counted(gateway):
    url, up = gateway
    chunks = list(sdk(url).chat.completions.create(model="mid", messages=QUESTION, stream=True,
                                                   stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 7
    metrics = httpx.get(url + "/metrics", timeout=5).text
    assert sample_total(metrics, "pickwise_upstream_tokens_total", model="mid", kind="completion") == 7


def test_a_stream_with_usage_in_every_event_is_counted_once(gateway):
    # vLLM's continuous_usage_stats sends the usage so far in every chunk: each is a running total
    url, up = gateway
    up.behave("mid", usage_every_event=True)
    chunks = list(sdk(url).chat.completions.create(model="mid", messages=QUESTION, stream=True,
                                                   stream_options={"include_usage": True}))
    assert chunks[-1].usage.completion_tokens == 7
    metrics = httpx.get(url + "/metrics", timeout=5).text
    assert sample_total(metrics, "pickwise_upstream_tokens_total", model="mid", kind="completion") == 7
    assert sample_total(metrics, "pickwise_upstream_tokens_total", model="mid", kind="prompt") == 12


def test_stream_failing_midway_ends_with_an_error_event(gateway):
    url, up = gateway
    up.behave("provider-cheap", "cut", cut_after=3)
    text = ""
    with pytest.raises(openai.APIError, match="failed midway"):
        with sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION,
                                                                       stream=True) as raw:
            assert raw.headers["x-pickwise-attempts"] == "cheap"
            for chunk in raw.parse():
                text += "".join(c.delta.content or "" for c in chunk.choices)
    assert text == "Hello from"  # this model's first words, never another model's appended
    assert up.calls() == ["provider-cheap"]
    metrics = httpx.get(url + "/metrics", timeout=5).text
    assert sample_total(metrics, "pickwise_upstream_failures_total", model="cheap", kind="interrupted") == 1


def test_keep_alive_comments_before_a_streams_first_chunk_do_not_count_as_an_answer(gateway):
    # routers send ': keep-alive' while a model thinks; a server that then drops the stream has answered nothing
    url, up = gateway
    up.behave("provider-cheap", "cut", cut_after=0, comments_first=2)
    with sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION, stream=True) as raw:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        assert raw.headers["x-pickwise-attempts"] == "cheap,down,mid"
    assert text == "Hello from mid. The answer is (A)."
    up.behave("mid", comments_first=2)  # passed on with the first chunk: the SDK skips comments
    chunks = list(sdk(url).chat.completions.create(model="mid", messages=QUESTION, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text


def test_a_stream_opening_with_an_error_event_falls_back(gateway):
    # nothing has gone to the caller: another model may answer, rather than the SDK reading an error chunk
    url, up = gateway
    up.behave("provider-cheap", "error_event")
    with sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION, stream=True) as raw:
        text = "".join(c.delta.content or "" for chunk in raw.parse() for c in chunk.choices)
        assert raw.headers["x-pickwise-attempts"] == "cheap,down,mid"
    assert text == "Hello from mid. The answer is (A)."


def test_stream_falls_back_before_the_first_byte(gateway):
    url, up = gateway
    up.behave("provider-cheap", "status", status=503)
    with sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION, stream=True) as raw:
        text = "".join(c.delta.content or "" for chunk in raw.parse() for c in chunk.choices)
        assert raw.headers["x-pickwise-attempts"] == "cheap,down,mid"
    assert text == "Hello from mid. The answer is (A)."


# ---- fallback ----------------------------------------------------------------------------------
def test_fallback_follows_the_ranking_past_errors_refusals_and_hangs(gateway):
    url, up = gateway
    up.behave("provider-cheap", "status", status=429)
    up.behave("mid", "hang")  # 'down' refuses connections; 'mid' times out after its 1 s
    raw, completion = create(sdk(url), extra_body={"pickwise": {"max_attempts": 4}})
    assert raw.headers["x-pickwise-attempts"] == "cheap,down,mid,dear"
    assert raw.headers["x-pickwise-model"] == "dear"
    assert completion.choices[0].message.content.startswith("Hello from dear")
    assert up.calls() == ["provider-cheap", "mid", "dear"]
    metrics = httpx.get(url + "/metrics", timeout=5).text
    assert sample_total(metrics, "pickwise_upstream_fallbacks_total") == 3
    assert sample_total(metrics, "pickwise_upstream_failures_total", model="down", kind="connect") == 1
    assert sample_total(metrics, "pickwise_upstream_failures_total", model="mid", kind="timeout") == 1
    assert sample_total(metrics, "pickwise_upstream_calls_total", model="dear", outcome="ok") == 1


def test_a_model_whose_server_timed_out_is_tried_last_for_a_while(gateway):
    # each attempt at a server that is down costs its timeout (1 s here) before the next model answers
    url, up = gateway
    up.behave("provider-cheap", "hang")
    options = {"pickwise": {"exclude": ["down"]}}
    raw, _ = create(sdk(url), extra_body=options)
    assert raw.headers["x-pickwise-attempts"] == "cheap,mid"
    started = time.monotonic()
    raw, _ = create(sdk(url), extra_body=options)
    assert raw.headers["x-pickwise-attempts"] == "mid" and time.monotonic() - started < 0.9
    up.behave("provider-cheap")
    up.behave("mid", "status", status=503)
    up.behave("dear", "status", status=503)
    raw, _ = create(sdk(url), extra_body=options)  # still tried, last; its answer ends the cooldown
    assert raw.headers["x-pickwise-attempts"] == "mid,dear,cheap"
    raw, _ = create(sdk(url), extra_body=options)
    assert raw.headers["x-pickwise-attempts"] == "cheap"


def test_a_broken_answer_body_falls_back_too(gateway):
    url, up = gateway
    up.behave("provider-cheap", "drop")
    raw, _ = create(sdk(url))
    assert raw.headers["x-pickwise-attempts"] == "cheap,down,mid"


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_that_is_not_a_chat_completion_falls_back(gateway, stream):
    # a 200 whose body is no JSON object (or, asked to stream, not server-sent events) is no answer:
    # passed on, the SDK would fail to parse it, or read an empty stream, and feedback would score it
    url, up = gateway
    up.behave("provider-cheap", "malformed")
    if stream:
        with sdk(url).chat.completions.with_streaming_response.create(model=AUTO, messages=QUESTION,
                                                                      stream=True) as answer:
            text = "".join(c.choices[0].delta.content or "" for c in answer.parse() if c.choices)
            attempts = answer.headers["x-pickwise-attempts"]
    else:
        raw, completion = create(sdk(url))
        text, attempts = completion.choices[0].message.content, raw.headers["x-pickwise-attempts"]
    assert attempts == "cheap,down,mid" and text == "Hello from mid. The answer is (A)."


def _qualities(url: str) -> dict[str, float]:
    body = {"prompt": QUESTION[0]["content"], "models": ["cheap", "down", "mid", "dear"]}
    answer = httpx.post(url + "/v1/select", json=body, timeout=10).json()
    return {c["name"]: c["quality"] for c in answer["candidates"] if c["name"] in body["models"]}


def test_fallback_never_goes_below_the_quality_floor(gateway):
    url, up = gateway
    q = _qualities(url)
    assert q["cheap"] < q["down"] < q["mid"] < q["dear"]  # benchmark_score priors 0.3, 0.5, 0.6, 0.9
    up.behave("dear", "status", status=500)
    floor = {"min_quality": (q["mid"] + q["dear"]) / 2, "allow_low_confidence": True}
    with pytest.raises(openai.APIStatusError) as failed:
        create(sdk(url), extra_body={"pickwise": floor})
    assert failed.value.status_code == 502
    assert failed.value.response.headers["x-pickwise-attempts"] == "dear"
    assert [a["model"] for a in failed.value.body["attempts"]] == ["dear"]
    assert up.calls() == ["dear"]  # 'mid' and 'cheap' are below the floor: never called

    floor["min_quality"] = (q["down"] + q["mid"]) / 2
    up.behave("mid", "status", status=502)
    up.behave("dear")
    raw, _ = create(sdk(url), extra_body={"pickwise": floor})
    assert raw.headers["x-pickwise-attempts"] == "mid,dear"  # 'down' is below the floor too


def test_all_attempts_failing_is_502_naming_them(gateway):
    url, up = gateway
    up.default.kind, up.default.status = "status", 503
    with pytest.raises(openai.InternalServerError) as failed:
        create(sdk(url))
    error = failed.value
    assert error.status_code == 502 and error.body["code"] == "upstream_failed"
    assert [(a["model"], a["outcome"]) for a in error.body["attempts"]] == [
        ("cheap", "status 503"), ("down", "connect"), ("mid", "status 503")]
    assert "1 more model(s)" in error.body["message"]  # 'dear' is beyond max_attempts (3)
    assert error.response.headers["x-pickwise-attempts"] == "cheap,down,mid"


def test_rate_limits_on_every_attempt_are_a_429_with_the_soonest_retry_after(gateway):
    # a 502 would hide "try again in N s" from the SDK, which retries a 429 after its Retry-After
    url, up = gateway
    up.behave("provider-cheap", "status", status=429, retry_after="7")
    up.behave("mid", "status", status=429, retry_after="3")
    up.behave("dear", "status", status=429)
    with pytest.raises(openai.RateLimitError) as limited:
        create(sdk(url), extra_body={"pickwise": {"exclude": ["down"]}})
    error = limited.value
    assert error.body["code"] == "upstream_rate_limited" and error.body["type"] == "rate_limit_error"
    assert [a["outcome"] for a in error.body["attempts"]] == ["status 429"] * 3
    assert error.response.headers["retry-after"] == "3"
    with pytest.raises(openai.RateLimitError) as limited:  # a named model: its own Retry-After
        create(sdk(url), model="cheap")
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError) as failed:  # 'down' refuses connections: not only limits
        create(sdk(url))
    assert failed.value.status_code == 502 and "retry-after" not in failed.value.response.headers


@pytest.mark.parametrize("status", [400, 409, 413, 422])
def test_client_errors_from_the_upstream_come_back_as_is(gateway, status):
    url, up = gateway
    up.behave("provider-cheap", "status", status=status)
    with pytest.raises(openai.APIStatusError) as refused:
        create(sdk(url))
    assert refused.value.status_code == status
    assert refused.value.body["code"] == f"told_{status}"  # the upstream's own body
    assert refused.value.response.headers["x-pickwise-attempts"] == "cheap"
    assert up.calls() == ["provider-cheap"]


@pytest.mark.parametrize("status", [401, 403, 404])
def test_an_upstream_refusing_the_gateways_key_or_model_name_falls_back(gateway, status):
    # 401/403/404 are about that model's endpoint (the key the gateway holds, its access, the model's name
    # there), not the caller's request: another model answers, and the caller never reads "wrong API key"
    url, up = gateway
    up.behave("provider-cheap", "status", status=status)
    raw, _ = create(sdk(url))
    assert raw.headers["x-pickwise-attempts"] == "cheap,down,mid"
    before = len(up.calls("provider-cheap"))
    with pytest.raises(openai.InternalServerError) as failed:
        create(sdk(url, max_retries=2), model="cheap")
    assert failed.value.status_code == 502
    assert failed.value.body["attempts"][0]["outcome"] == f"status {status}"
    # the same call would fail the same way: the SDK is told not to repeat it
    assert failed.value.response.headers["x-should-retry"] == "false"
    assert len(up.calls("provider-cheap")) == before + 1


def test_a_client_that_leaves_cancels_the_upstream_call(gateway):
    url, up = gateway
    up.behave("mid", "hang")

    def leave_early():
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/openai/v1/chat/completions", json={"model": "mid", "messages": QUESTION},
                       timeout=httpx.Timeout(5, read=0.3))

    thread = threading.Thread(target=leave_early)
    thread.start()
    thread.join(5)
    deadline = time.monotonic() + 3
    while not up.cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert up.cancelled == ["mid"]  # well before the endpoint's own 1 s timeout would have fired


# ---- keys ----------------------------------------------------------------------------------------
def test_client_keys_guard_every_gateway_route(tmp_path, upstream, tiny_predictor, monkeypatch):
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    registry = served_registry(tmp_path / "registry", upstream.base_url)
    with pickwise_server(registry, tiny_predictor, api_keys="key-one, key-two") as url:
        raw, _ = create(sdk(url, key="key-two"))
        assert raw.http_response.status_code == 200
        with pytest.raises(openai.PermissionDeniedError):
            create(sdk(url, key="key-three"))
        with pytest.raises(openai.PermissionDeniedError):
            sdk(url, key="nope").models.list()
        with pytest.raises(openai.PermissionDeniedError):
            sdk(url, key="nope").models.retrieve("cheap")
        bare = httpx.get(url + "/openai/v1/models", timeout=5)
        assert bare.status_code == 401 and bare.json()["error"]["type"] == "authentication_error"
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 200  # the rest of the API is unchanged
    assert {s.headers["authorization"] for s in upstream.seen} == {f"Bearer {UPSTREAM_KEY}"}


def test_the_upstream_key_is_never_echoed(gateway, caplog):
    url, up = gateway
    caplog.set_level(logging.DEBUG)
    up.behave("mid", "status", status=500)
    texts = []
    for model in (AUTO, "mid", "no-such-model"):
        answer = httpx.post(url + "/openai/v1/chat/completions", json={"model": model, "messages": QUESTION}, timeout=10)
        texts += [answer.text, str(answer.headers)]
    for path in ("/openai/v1/models", "/v1/models", "/v1/models/cheap", "/metrics", "/readyz"):
        answer = httpx.get(url + path, timeout=10)
        texts += [answer.text, str(answer.headers)]
    texts += [r.getMessage() for r in caplog.records]
    assert any("Hello from" in t for t in texts)
    assert not [t for t in texts if UPSTREAM_KEY in t]


def test_a_missing_key_variable_falls_back(gateway, monkeypatch):
    url, up = gateway
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(openai.InternalServerError) as failed:
        create(sdk(url), model="mid")
    assert failed.value.body["attempts"][0]["outcome"] == "no_key"
    assert KEY_ENV in failed.value.body["message"] or failed.value.body["attempts"]
    assert up.calls() == []


@pytest.mark.parametrize("content", ["", " \n\t "])
def test_a_conversation_without_text_is_routed_not_refused(gateway, content):
    # OpenAI takes a blank message; the predictor reads the gateway's stand-in for no text (it was a 500)
    url, up = gateway
    raw, completion = create(sdk(url), messages=[{"role": "user", "content": content}])
    assert raw.status_code == 200 and raw.headers["x-pickwise-model"] == "cheap"
    assert up.seen[-1].body["messages"] == [{"role": "user", "content": content}]
