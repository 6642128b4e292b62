"""Capabilities beyond text (tools, vision, audio, json_schema, files): declared in the registry, required by
a request (`requires`, or read from a chat request's body by the gateway), never broken by a fallback."""
from __future__ import annotations

import json

import openai
import pytest
import yaml

from bench.openai_upstream import Upstream
from pickwise.api.cli.main import main
from pickwise.api.gateway.capabilities import required_capabilities
from pickwise.registry import RegistryError, load_registry
from pickwise.selector import SelectionConstraints, select_models
from pickwise.selector.errors import InfeasibleSelection
from pickwise.selector.types import Candidate
from tests.api_support import new_model
from tests.gateway_support import KEY_ENV, UPSTREAM_KEY, pickwise_server, served_registry
from tests.test_gateway import create, sdk

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
SCORE = {"probe": {"benchmark_score": 0.5}}  # scored without other models in the registry
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}


def test_the_registry_reads_capabilities_and_names_a_bad_one(tmp_path):
    entry = new_model("seer", capabilities=["tools", "vision"], **SCORE)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump([entry]))
    assert load_registry(tmp_path).get("seer").capabilities == ("tools", "vision")
    for bad, said in ((["tools", "toolz"], "field 'capabilities[1]': Input should be 'tools'"), (["tools", "tools"], "each capability at most once")):
        (tmp_path / "m.yaml").write_text(yaml.safe_dump([{**entry, "capabilities": bad}]))
        with pytest.raises(RegistryError) as err:
            load_registry(tmp_path)
        assert said in str(err.value) and "m.yaml" in str(err.value)


def _candidates() -> list[Candidate]:
    return [Candidate(name="plain", quality=0.9, cost_usd=0.001, latency_ms=100),
            Candidate(name="tooled", quality=0.8, cost_usd=0.01, latency_ms=100, capabilities=["tools"])]


def test_a_requirement_rules_out_models_that_do_not_declare_it_and_no_fallback_breaks_it():
    decision = select_models(_candidates(), SelectionConstraints(requires=["tools"]))
    assert decision.chosen == ["tooled"]
    assert {c.name: c.excluded_by for c in decision.candidates}["plain"] == ["lacks tools"]
    for fallback in ("error", "cheapest", "best_quality"):
        with pytest.raises(InfeasibleSelection) as err:
            select_models(_candidates(), SelectionConstraints(requires=["tools", "vision"], on_infeasible=fallback))
        assert err.value.blocking == {"plain": ["lacks tools", "lacks vision"], "tooled": ["lacks vision"]}


def test_the_gateway_reads_what_a_chat_request_needs():
    ask = [{"role": "user", "content": "hi"}]
    assert required_capabilities({"messages": ask}) == []
    assert required_capabilities({"messages": ask, "tools": [TOOL], "response_format": {"type": "json_schema"}}) \
        == ["tools", "json_schema"]
    assert required_capabilities({"messages": ask, "response_format": {"type": "json_object"}}) == []
    assert required_capabilities({"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, IMAGE]},
                                               {"role": "assistant", "tool_calls": [{"id": "1"}]},
                                               {"role": "tool", "content": "sunny", "tool_call_id": "1"}]}) \
        == ["tools", "vision"]
    audio_part = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    assert required_capabilities({"messages": [{"role": "user", "content": [audio_part]}]}) == ["audio"]
    assert required_capabilities({"messages": ask, "modalities": ["text", "audio"]}) == ["audio"]
    pdf = {"type": "file", "file": {"filename": "lease.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    assert required_capabilities({"messages": [{"role": "user", "content": [{"type": "text", "text": "Sum up"}, pdf]}],
                                  "tools": [TOOL]}) == ["tools", "files"]
    # a conversation going on from an audio answer refers to it by id in the assistant's message
    spoken = {"role": "assistant", "content": None, "audio": {"id": "audio_abc123"}}
    assert required_capabilities({"messages": [*ask, spoken, {"role": "user", "content": "again"}]}) == ["audio"]


def test_cli_select_requires_and_says_where_a_capability_is_declared(tmp_path, capsys, tiny_loader):
    entries = [new_model("plain", **SCORE), new_model("tooled", capabilities=["tools"], **SCORE,
                                             pricing={"input_per_million": 5.0, "output_per_million": 10.0})]
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(entries))
    common = ["select", "Call the weather tool for Paris.", "--registry", str(tmp_path), "--models", "plain,tooled",
              "--json"]
    assert main(common) == 0
    assert json.loads(capsys.readouterr().out)["chosen"] == ["plain"]
    assert main([*common, "--requires", "tools"]) == 0
    assert json.loads(capsys.readouterr().out)["chosen"] == ["tooled"]
    assert main([*common[:-1], "--requires", "tools,vision"]) == 1
    err = capsys.readouterr().err
    assert "lacks vision" in err and "the call needs vision, which no model here declares" in err
    assert "`capabilities`" in err


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A loopback upstream serving 'cheap' < 'mid' (tools) < 'dear' (tools, vision, files) by price."""
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    fields = {"mid": {"capabilities": ["tools"]}, "dear": {"capabilities": ["tools", "vision", "files"]}}
    with Upstream(key=UPSTREAM_KEY).running() as up:
        yield served_registry(tmp_path / "registry", up.base_url, fields=fields), up


def test_the_gateway_routes_a_call_only_to_models_that_take_what_it_sends(served, tiny_predictor):
    skip_down = {"pickwise": {"exclude": ["down"]}}
    with pickwise_server(served[0], tiny_predictor) as url:
        client = sdk(url)
        raw, _ = create(client, extra_body=skip_down)
        assert raw.headers["x-pickwise-model"] == "cheap"  # text only: the cheapest
        raw, _ = create(client, tools=[TOOL], extra_body=skip_down)
        assert raw.headers["x-pickwise-model"] == "mid"  # the cheapest that declares tools
        raw, _ = create(client, messages=[{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                                                      IMAGE]}], extra_body=skip_down)
        assert raw.headers["x-pickwise-model"] == "dear"
        pdf = {"type": "file", "file": {"filename": "lease.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
        raw, _ = create(client, messages=[{"role": "user", "content": [{"type": "text", "text": "Can I sublet?"}, pdf]}],
                        extra_body=skip_down)
        assert raw.headers["x-pickwise-model"] == "dear"
        with pytest.raises(openai.ConflictError) as err:  # nothing declares json_schema
            create(client, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
                   extra_body=skip_down)
        assert "the call needs json_schema, which no model here declares" in err.value.body["message"]
        raw, _ = create(client, model="cheap", tools=[TOOL])  # a named model is the caller's choice
        assert raw.headers["x-pickwise-model"] == "cheap"


def test_a_409_names_the_models_that_declare_what_the_call_needs_outside_its_pool(served, tiny_predictor):
    """'mid' and 'dear' declare tools but the call may not go to them (an allow-list, the server's limits):
    the 409 names them, rather than asking for a declaration they already have."""
    limits = json.dumps({"exclude": ["dear"]})
    with pickwise_server(served[0], tiny_predictor, gateway_limits=limits) as url:
        with pytest.raises(openai.ConflictError) as err:
            create(sdk(url), tools=[TOOL], extra_body={"pickwise": {"models": ["cheap"]}})
    message = err.value.body["message"]
    # the served models, and those registered without an endpoint (gemini-1.5-flash-002, gpt-4-1106-preview)
    # those without an endpoint say so: no allow-list reaches them, their registry entry needs one
    assert ("the call needs tools, which no model here declares; dear, gemini-1.5-flash-002 (no endpoint), "
            "gpt-4-1106-preview (no endpoint) and mid declare it, outside the models this call may go to") in message
    assert "list it under `capabilities`" not in message
