"""The gateway's parts without a server: the registry's endpoint entry, the prompt the predictor
reads of a conversation, the fallback ranking, the SSE framing of relayed streams."""
from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from pickwise.api.gateway.cooldown import Cooldown
from pickwise.api.gateway.prompt import conversation_tokens, request_tools, routing_prompt
from pickwise.api.gateway.upstream import sse_events, usage_of
from pickwise.registry import Endpoint, count_tokens
from pickwise.selector import Candidate, SelectionConstraints, ranking, select_models


@pytest.mark.parametrize("url, why", [
    ("ftp://example.com/v1", "http"), ("https://user:pw@example.com/v1", "credentials"),
    ("https://example.com/v1?key=sk-1", "query"), ("example.com", "http"),
])
def test_endpoint_urls_hold_no_secrets(url, why):
    with pytest.raises(ValidationError, match=why):
        Endpoint(base_url=url)


def test_endpoint_is_strict():
    assert Endpoint(base_url="http://127.0.0.1:9/v1/").base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(ValidationError):
        Endpoint(base_url="https://example.com", api_key="sk-123")
    with pytest.raises(ValidationError):
        Endpoint(base_url="https://example.com", timeout_s="60")
    with pytest.raises(ValidationError):
        Endpoint(base_url="https://example.com", api_key_env="NOT A NAME")


def test_the_last_user_turn_is_read_with_context_that_fits():
    messages = [{"role": "system", "content": "You are a careful maths tutor."},
                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": [{"type": "text", "text": "What is 17 * 23?"},
                                             {"type": "image_url", "image_url": {"url": "data:..."}}]}]
    prompt, tokens = routing_prompt(messages)
    assert prompt.startswith("You are a careful maths tutor.") and prompt.endswith("What is 17 * 23?")
    assert "How can I help?" in prompt
    assert tokens > count_tokens(prompt)  # the whole conversation, plus the chat format's tokens


def test_a_long_last_turn_is_read_alone_and_long_context_is_cut():
    long_turn = "word " * 400
    prompt, _ = routing_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": long_turn}])
    assert prompt == long_turn
    history = "earlier " * 1000
    prompt, tokens = routing_prompt([{"role": "user", "content": history}, {"role": "assistant", "content": "ok"},
                                     {"role": "user", "content": "And now?"}])
    assert prompt.endswith("And now?") and count_tokens(prompt) <= 130
    assert tokens > 1000


def test_context_messages_of_only_invisible_characters_are_left_out():
    # the front door's rule (registry.prompt_text.is_blank): zero-width characters print nothing, so a
    # system message or earlier turn of them is no context, and takes no room from one that has text
    messages = [{"role": "system", "content": "\u200b\u2060"}, {"role": "user", "content": "Tell me about tides."},
                {"role": "assistant", "content": " \ufeff\u200d "}, {"role": "user", "content": "And waves?"}]
    prompt, _ = routing_prompt(messages)
    assert prompt == "Tell me about tides.\n\nAnd waves?"


def _candidates():
    return [Candidate(name=n, quality=q, cost_usd=c, latency_ms=100.0)
            for n, q, c in [("a", 0.5, 1.0), ("b", 0.9, 3.0), ("c", 0.7, 2.0), ("d", 0.2, 0.5)]]


def test_ranking_follows_the_objective_and_keeps_to_the_floor():
    cons = SelectionConstraints(min_quality=0.45)
    assert ranking(select_models(_candidates(), cons), cons) == ["a", "c", "b"]  # 'd' is below the floor
    cons = SelectionConstraints(objective="max_quality", exclude=["b"])
    assert ranking(select_models(_candidates(), cons), cons) == ["c", "a", "d"]
    cons = SelectionConstraints(min_quality=0.95, on_infeasible="best_quality")
    assert ranking(select_models(_candidates(), cons), cons) == ["b"]  # a fallback choice has no alternatives


def test_streams_are_relayed_in_whole_events():
    async def chunks():
        for part in (b"data: {\"a\"", b": 1}\n\nda", b"ta: {\"usage\": {\"completion_tokens\": 3}}\r\n\r\n",
                     b"data: [DONE]\n\n"):
            yield part

    async def collect():
        return [e async for e in sse_events(chunks())]

    events = asyncio.run(collect())
    assert events == [b'data: {"a": 1}\n\n', b'data: {"usage": {"completion_tokens": 3}}\r\n\r\n', b"data: [DONE]\n\n"]
    assert usage_of(events[1]) == {"completion_tokens": 3} and usage_of(events[0]) is None


def test_a_model_that_could_not_connect_or_timed_out_is_tried_last_for_a_while():
    now = [0.0]
    cooldown = Cooldown(30.0, clock=lambda: now[0])
    names = ["a", "b", "c"]
    cooldown.attempted("a", "timeout")
    cooldown.attempted("b", "status 503")  # a fast refusal says nothing of the next call
    assert cooldown.order(names, str) == ["b", "c", "a"]
    cooldown.attempted("c", "connect")
    assert cooldown.order(names, str) == ["b", "a", "c"]
    cooldown.attempted("c", "ok")  # tried last and answered: its server is back
    now[0] = 29.9
    assert cooldown.order(names, str) == ["b", "c", "a"]
    now[0] = 30.0
    assert cooldown.order(names, str) == names


def test_tool_definitions_and_calls_count_in_the_conversation_not_in_the_prompt():
    # the model reads them (a tool schema can be thousands of tokens): a context-window check without
    # them routes to a model whose server then refuses the request with a 400, which does not fall back
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "string", "description": "a long description "
                                                                                              "of the field " * 5}
                                               for i in range(40)}}
    body = {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": schema}}],
            "messages": [{"role": "user", "content": "Find my order."},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "c1", "type": "function", "function": {"name": "lookup",
                                                                           "arguments": '{"q": "' + "order " * 300 + '"}'}}]},
                         {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
                         {"role": "user", "content": "When will it arrive?"}]}
    bare = conversation_tokens(body["messages"])
    tools = request_tools(body)
    total = conversation_tokens(body["messages"], tools=tools)
    assert bare > 300 and total > bare + 40 * 5 * 5  # the call's arguments, then the schema's descriptions
    prompt, counted = routing_prompt(body["messages"], tools=tools)
    assert counted == total and "lookup" not in prompt and prompt.endswith("When will it arrive?")
    assert request_tools({"functions": [{"name": "f"}], "tools": None}) == [{"name": "f"}]
