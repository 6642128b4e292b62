"""A chat request's max_tokens (or max_completion_tokens) through the gateway, end to end: the official
OpenAI SDK against pickwise (uvicorn, loopback), forwarding to a loopback upstream that refuses a cap
over its limit with a 400, as real servers do. The cap bounds the estimates, rules out the models
whose window cannot take it, and is refused by pickwise itself (400) when no model it could go to does."""
from __future__ import annotations

import openai
import pytest

from bench.openai_upstream import Upstream
from tests.gateway_support import KEY_ENV, UPSTREAM_KEY, pickwise_server, served_registry

AUTO = "pickwise/auto"
QUESTION = [{"role": "user", "content": "Which of these numbers is prime? A) 4 B) 6 C) 7 D) 9"}]
ROOMY = {"context_window": 32_000, "max_output_tokens": 16_000}
FIELDS = {name: {**fields, "capabilities": ["tools"]}  # every one takes the tool calls some tests send
          for name, fields in {"cheap": {"context_window": 4096, "max_output_tokens": 4096}, "down": ROOMY,
                               "mid": ROOMY, "dear": ROOMY}.items()}
NO_DOWN = {"pickwise": {"exclude": ["down"]}}  # 'down' is served by nothing: keeps the attempts to one


@pytest.fixture
def gateway(tmp_path, tiny_predictor, monkeypatch):
    """(pickwise's base URL, the upstream); 'cheap' (the cheapest) has a 4,096-token window."""
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    with Upstream(key=UPSTREAM_KEY).running() as up:
        up.behave("provider-cheap", max_tokens=4096)
        registry = served_registry(tmp_path / "registry", up.base_url, fields=FIELDS)
        with pickwise_server(registry, tiny_predictor) as url:
            yield url, up


def create(url: str, model: str = AUTO, **kwargs):
    client = openai.OpenAI(base_url=url + "/openai/v1", api_key="unused", max_retries=0)
    return client.chat.completions.with_raw_response.create(model=model, messages=QUESTION, **kwargs)


def refusal(url: str, kind: type[openai.APIStatusError], **kwargs) -> dict:
    with pytest.raises(kind) as refused:
        create(url, **kwargs)
    return refused.value.body


def test_a_cap_the_cheapest_window_cannot_take_routes_past_that_model(gateway):
    url, up = gateway
    raw = create(url, max_tokens=8000, extra_body=NO_DOWN)
    assert raw.headers["x-pickwise-model"] == "mid" and up.calls() == ["mid"]
    assert up.seen[-1].body["max_tokens"] == 8000  # forwarded as sent
    assert create(url, max_completion_tokens=8000, extra_body=NO_DOWN).headers["x-pickwise-model"] == "mid"
    # the conversation plus 4,000 tokens fit 4,096: the cheapest again, and its server takes it
    raw = create(url, max_tokens=4000, extra_body=NO_DOWN)
    assert raw.headers["x-pickwise-model"] == "cheap" and raw.parse().choices[0].message.content
    # a null field is no cap
    assert create(url, max_tokens=None, extra_body=NO_DOWN).headers["x-pickwise-model"] == "cheap"


def test_a_cap_no_served_model_takes_is_a_400_naming_it(gateway):
    url, up = gateway
    body = refusal(url, openai.BadRequestError, max_tokens=1_000_000_000)
    assert body["param"] == "max_tokens" and body["code"] == "invalid_parameter"
    assert body["type"] == "invalid_request_error"
    assert "max_tokens 1,000,000,000 fits no model" in body["message"]
    assert "the most any takes is 16,000" in body["message"], body["message"]
    body = refusal(url, openai.BadRequestError, max_completion_tokens=20_000, stream=True)
    assert body["param"] == "max_completion_tokens"
    assert up.calls() == []


def test_context_window_exclusions_under_a_cap_say_so_in_a_409(gateway):
    url, up = gateway
    body = refusal(url, openai.ConflictError, max_tokens=8000, extra_body={"pickwise": {"max_cost_usd": 0.0}})
    assert body["blocking"]["cheap"] == ["context window", "max output tokens", "cost cap"]
    assert body["blocking"]["mid"] == ["cost cap"]
    assert "'context window' counts the conversation's" in body["message"]
    assert "plus max_tokens 8,000" in body["message"]
    assert up.calls() == []


def test_a_named_model_is_refused_before_its_upstream_is_called(gateway):
    url, up = gateway
    body = refusal(url, openai.BadRequestError, model="cheap", max_tokens=5000)
    assert body["param"] == "max_tokens"
    assert "max_tokens 5,000 is more than model 'cheap' can answer" in body["message"]
    assert "context window 4,096, max_output_tokens 4,096" in body["message"]
    body = refusal(url, openai.BadRequestError, model="mid", max_completion_tokens=16_001, stream=True)
    assert body["param"] == "max_completion_tokens" and "at most 16,000" in body["message"]
    assert up.calls() == []
    assert create(url, model="cheap", max_tokens=4000).headers["x-pickwise-model"] == "cheap"


def test_both_fields_or_a_bad_value_are_refused_before_routing(gateway):
    url, up = gateway
    for model in (AUTO, "cheap"):  # OpenAI's rule, in its words
        body = refusal(url, openai.BadRequestError, model=model, max_tokens=10, max_completion_tokens=10)
        assert body["message"] == "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported."
        assert body["param"] == "max_tokens"
    for bad in (0, -5, 2.5, "10", True):
        body = refusal(url, openai.UnprocessableEntityError, extra_body={"max_tokens": bad})
        assert body["param"] == "max_tokens" and "at least 1" in body["message"]
    assert up.calls() == []


def test_the_cap_bounds_the_cost_and_latency_estimates(gateway):
    """The way out of an infeasible cap is the cheapest (fastest) model's estimate: under max_tokens 1 it is
    the estimate for a 1-token answer, as expected_output_tokens 1 gives, and min(override, cap) with both."""
    url, _ = gateway

    def way_out(cap: str, **kwargs) -> float:
        constraint = {"max_cost_usd": 0.0} if cap == "max_cost_usd" else {"max_latency_ms": 1.0}
        options = {**constraint, **kwargs.pop("options", {})}
        return refusal(url, openai.ConflictError, extra_body={"pickwise": options}, **kwargs)["way_out"][cap]

    for cap in ("max_cost_usd", "max_latency_ms"):
        predicted, capped = way_out(cap), way_out(cap, max_tokens=1)
        assert capped < predicted
        assert capped == way_out(cap, options={"expected_output_tokens": 1})
        assert capped == way_out(cap, max_completion_tokens=1000, options={"expected_output_tokens": 1})
    assert way_out("max_latency_ms", max_tokens=1) == 105.0  # 'cheap': 100 ms to the first token, 200 tokens/s


def test_n_answers_are_priced_n_times_their_output_and_the_prompt_once(gateway):
    """`n: 3` makes the upstream write 3 answers: the estimate pays 3 answers' output tokens and the prompt
    once (what 1 answer of 3x the length costs); latency is one answer's; the cap bounds each answer."""
    url, up = gateway

    def way_out(cap: str, tokens: int, **kwargs) -> float:
        options = {"max_cost_usd": 0.0} if cap == "max_cost_usd" else {"max_latency_ms": 1.0}
        return refusal(url, openai.ConflictError, extra_body={"pickwise": {**options, "expected_output_tokens": tokens},
                                                              **kwargs.pop("extra", {})}, **kwargs)["way_out"][cap]

    assert way_out("max_cost_usd", 1000, n=3) == way_out("max_cost_usd", 3000) > way_out("max_cost_usd", 1000)
    assert way_out("max_cost_usd", 1000, n=1) == way_out("max_cost_usd", 1000)
    assert way_out("max_latency_ms", 1000, n=3) == way_out("max_latency_ms", 1000)
    # each answer is capped: 3 answers of at most 100 tokens
    assert way_out("max_cost_usd", 1000, n=3, max_tokens=100) == way_out("max_cost_usd", 300)
    assert up.calls() == []
    # the cap is each answer's: 3 answers of 4,000 tokens still fit the cheapest model's 4,096-token window
    raw = create(url, n=3, max_tokens=4000, extra_body=NO_DOWN)
    assert raw.headers["x-pickwise-model"] == "cheap" and up.seen[-1].body["n"] == 3


def test_a_bad_n_is_refused_naming_it(gateway):
    url, up = gateway
    for model in (AUTO, "cheap"):
        for bad in (0, -1, 2.5, "3", True, 129):
            body = refusal(url, openai.UnprocessableEntityError, model=model, extra_body={"n": bad})
            assert body["param"] == "n" and "from 1 to 128" in body["message"], body
    assert up.calls() == []
    assert create(url, n=None, extra_body=NO_DOWN).headers["x-pickwise-model"] == "cheap"  # null: unset


def test_tool_definitions_count_toward_the_window(gateway):
    # a 4,000-token cap fits 'cheap' after the question alone, not after ~500 tokens of tool schema
    url, up = gateway
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "string", "description": "the field's meaning"}
                                               for i in range(60)}}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": schema}}]
    raw = create(url, max_tokens=4000, tools=tools, extra_body=NO_DOWN)
    assert raw.headers["x-pickwise-model"] == "mid" and up.calls() == ["mid"]
    body = refusal(url, openai.BadRequestError, model="cheap", max_tokens=4000, tools=tools)
    assert body["param"] == "max_tokens" and "more than model 'cheap' can answer" in body["message"]
