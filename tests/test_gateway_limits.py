"""The gateway's limits (PICKWISE_GATEWAY_LIMITS, `serve --gateway-limits`): bounds a request may tighten
but not loosen, which no fallback breaks; the official OpenAI SDK against pickwise on loopback."""
from __future__ import annotations

import json

import openai
import pytest

from bench.openai_upstream import Upstream
from pickwise.api.cli.main import main
from pickwise.api.http.settings import ServiceSettings
from tests.gateway_support import KEY_ENV, UPSTREAM_KEY, pickwise_server, served_registry
from tests.test_gateway import create, sdk

SKIP_DOWN = {"exclude": ["down"]}  # nothing listens for 'down'


@pytest.fixture
def served(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    with Upstream(key=UPSTREAM_KEY).running() as up:
        yield served_registry(tmp_path / "registry", up.base_url), up


def limited(served, tiny_predictor, limits: dict, **settings):
    return pickwise_server(served[0], tiny_predictor, gateway_limits=json.dumps(limits), **settings)


def routed(client, **pickwise):
    return create(client, extra_body={"pickwise": {**SKIP_DOWN, **pickwise}})[0].headers["x-pickwise-model"]


def test_a_cost_limit_holds_whatever_the_request_or_its_fallback_asks(served, tiny_predictor):
    with pickwise_server(served[0], tiny_predictor) as url:  # without limits: the best model, 'dear'
        assert routed(sdk(url), objective="max_quality") == "dear"
        assert routed(sdk(url), min_quality=0.99, allow_low_confidence=True, on_infeasible="best_quality") == "dear"
    with limited(served, tiny_predictor, {"max_cost_usd": 0.001}) as url:
        client = sdk(url)
        assert routed(client, objective="max_quality") == "mid"  # 'dear' costs ~0.002 a call
        assert routed(client, objective="max_quality", max_cost_usd=5.0) == "mid"  # a looser cap changes nothing
        assert routed(client, objective="max_quality", max_cost_usd=0.0001) == "cheap"  # a stricter one holds
        # nothing meets the floor: the fallback takes the best model within the limit, not 'dear'
        assert routed(client, min_quality=0.99, allow_low_confidence=True, on_infeasible="best_quality") == "mid"
    with limited(served, tiny_predictor, {"max_cost_usd": 0.0}) as url:
        with pytest.raises(openai.ConflictError) as infeasible:  # no model is free: no fallback keeps the limit
            routed(sdk(url), on_infeasible="cheapest")
        assert "keeps the server's limits on max_cost_usd (PICKWISE_GATEWAY_LIMITS)" in infeasible.value.message
        # and, as every 409, what ruled the models out (each costs more than nothing; down, excluded)
        assert "(4 models; ruled out by cost cap 4, deny-list 1), and no fallback" in infeasible.value.message
        assert infeasible.value.body["server_limits"] == {"max_cost_usd": 0.0}


def test_a_limited_floor_fallback_takes_a_low_confidence_model_the_request_allows(served, tiny_predictor):
    # every quality here is low-confidence, which the request allows and the limits do not forbid: 'mid'
    # (0.6) keeps the limited floor, so the cheapest fallback past the request's own cap is 'mid'
    with limited(served, tiny_predictor, {"min_quality": 0.5}) as url:
        assert routed(sdk(url), allow_low_confidence=True, max_cost_usd=1e-9, on_infeasible="cheapest") == "mid"


def test_a_limited_fallback_never_counts_a_model_a_hard_constraint_rules_out(served, tiny_predictor):
    # within the cost limit are 'cheap' and 'mid', both excluded by the request: no fallback keeps the
    # limit, and the 409 says so rather than blaming an allow-list the caller never sent
    with limited(served, tiny_predictor, {"max_cost_usd": 0.001}) as url:
        with pytest.raises(openai.ConflictError) as infeasible:
            routed(sdk(url), exclude=["down", "cheap", "mid"], min_quality=0.99, allow_low_confidence=True,
                   on_infeasible="best_quality")
    assert "keeps the server's limits on max_cost_usd" in infeasible.value.message
    assert "allow-list" not in infeasible.value.message


def test_a_409_offers_no_way_out_beyond_the_limits(served, tiny_predictor):
    with limited(served, tiny_predictor, {"max_cost_usd": 0.001}) as url:  # 'dear' costs ~0.002 a call
        with pytest.raises(openai.ConflictError) as infeasible:
            routed(sdk(url), models=["dear"])
    assert infeasible.value.body["way_out"] == {}
    assert "way out" not in infeasible.value.message
    assert "within the server's limits on max_cost_usd (PICKWISE_GATEWAY_LIMITS)" in infeasible.value.message


def test_a_floor_and_flags_cannot_be_lowered(served, tiny_predictor):
    with limited(served, tiny_predictor, {"min_quality": 0.5, "allow_low_confidence": False}) as url:
        with pytest.raises(openai.ConflictError) as infeasible:  # every quality here is low-confidence
            routed(sdk(url), min_quality=0.1, allow_low_confidence=True)
        assert "low confidence" in infeasible.value.message
        assert infeasible.value.body["way_out"] == {}  # allow_low_confidence is no way out the limits allow
        assert infeasible.value.body["server_limits"] == {"min_quality": 0.5, "allow_low_confidence": False}


def test_callers_reach_only_the_allowed_models_by_route_by_name_and_in_the_listing(served, tiny_predictor):
    # gpt-4-1106-preview is registered without an endpoint: allowed, but nothing to call
    allowed = {"models": ["cheap", "mid", "dear", "gpt-4-1106-preview"], "exclude": ["dear"]}
    with limited(served, tiny_predictor, allowed) as url:
        client = sdk(url)
        assert routed(client, objective="max_quality", exclude=[]) == "mid"  # 'down' and 'dear' are out
        with pytest.raises(openai.PermissionDeniedError) as outside:
            routed(client, models=["dear", "mid"])
        assert outside.value.body["param"] == "pickwise.models" and "'dear' is outside" in outside.value.message
        with pytest.raises(openai.PermissionDeniedError) as named:
            create(client, model="dear")
        assert named.value.body["param"] == "model"
        assert create(client, model="cheap")[0].headers["x-pickwise-model"] == "cheap"
        assert [m.id for m in client.models.list()] == ["pickwise/auto", "cheap", "mid"]
        with pytest.raises(openai.PermissionDeniedError):
            client.models.retrieve("dear")


def test_bad_limits_stop_serve_naming_the_field(registry_dir, tmp_path, capsys, monkeypatch):
    args = ["serve", "--registry", str(registry_dir), "--artifact", str(tmp_path)]
    assert main([*args, "--gateway-limits", '{"allow_low_confidence": true}']) == 2
    assert "--gateway-limits: allow_low_confidence: Input should be False" in capsys.readouterr().err
    monkeypatch.setenv("PICKWISE_GATEWAY_LIMITS", '{"models": ["gpt-4-1106-previw"]}')
    assert main([*args[:-1], str(tmp_path / "missing")]) == 2
    assert "PICKWISE_GATEWAY_LIMITS: models: unknown model 'gpt-4-1106-previw'" in capsys.readouterr().err
    # defaults routing every call outside the limits would refuse every call that sends no models (403)
    monkeypatch.setenv("PICKWISE_GATEWAY_LIMITS", '{"models": ["gpt-4-1106-preview"]}')
    assert main([*args[:-1], str(tmp_path / "missing"), "--gateway-defaults",
                 '{"models": ["gemini-1.5-flash-002", "gpt-4-1106-preview"]}']) == 2
    assert ("--gateway-defaults: models: 'gemini-1.5-flash-002' is outside the models PICKWISE_GATEWAY_LIMITS "
            "lets callers reach") in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "missing"), "--gateway-defaults", '{"expected_output_tokens": 50}',
                 "--gateway-limits", '{"max_latency_ms": 5000}']) == 2
    assert "--gateway-defaults: expected_output_tokens: --gateway-limits limits the estimated latency" \
        in capsys.readouterr().err
    # an allow-list of which the gateway can call nothing (no endpoint here): every routed call would be refused
    monkeypatch.setenv("PICKWISE_GATEWAY_LIMITS", '{"models": ["gpt-4-1106-preview"]}')
    assert main([*args[:-1], str(tmp_path / "missing")]) == 2
    assert ("PICKWISE_GATEWAY_LIMITS: models: the gateway can call none of them ('gpt-4-1106-preview': no "
            "endpoint)") in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "missing"), "--gateway-limits", "{}", "--gateway-defaults",
                 '{"models": ["gpt-4-1106-preview"]}']) == 2
    assert "--gateway-defaults: models: the gateway can call none of them" in capsys.readouterr().err
    monkeypatch.delenv("PICKWISE_GATEWAY_LIMITS")
    settings = ServiceSettings(gateway_limits='{"max_cost_usd": 0.01}')  # serve --workers hands them over
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    assert ServiceSettings().limits.max_cost_usd == 0.01
    # `--gateway-limits ''` over limits in the environment: none, in every worker as with one
    for name, value in ServiceSettings(gateway_limits="", gateway_defaults=" ").environment().items():
        monkeypatch.setenv(name, value)
    assert ServiceSettings().limits.set_fields() == {} and ServiceSettings().gateway_options == {}


def test_a_request_naming_an_excluded_model_is_refused_as_outside_the_limits(served, tiny_predictor):
    with limited(served, tiny_predictor, {"exclude": ["dear"]}) as url:  # no `models` limit: exclude alone
        with pytest.raises(openai.PermissionDeniedError) as outside:
            routed(sdk(url), models=["dear", "mid"])
    assert outside.value.body["param"] == "pickwise.models" and "'dear' is outside" in outside.value.message


def test_a_caller_cannot_shrink_the_estimate_a_cost_limit_is_checked_on(served, tiny_predictor):
    # 'dear' costs ~0.002 a call at its expected answer: a claimed 0-token answer would price it under the
    # limit, while nothing holds its answer to that; max_tokens does, and is how to bound one
    with limited(served, tiny_predictor, {"max_cost_usd": 0.001}) as url:
        with pytest.raises(openai.PermissionDeniedError) as outside:
            routed(sdk(url), objective="max_quality", expected_output_tokens=0)
        assert outside.value.body["param"] == "pickwise.expected_output_tokens"
        assert "max_tokens" in outside.value.message
        assert create(sdk(url), max_tokens=1, extra_body={"pickwise": {**SKIP_DOWN, "objective": "max_quality"}}
                      )[0].headers["x-pickwise-model"] == "dear"  # a 1-token answer is within the limit


def test_a_model_removed_while_serving_leaves_the_limits_exclude_instead_of_refusing_every_call(served, tiny_predictor):
    # serve checks the limits' names at startup; a model removed later (it cannot be reached anyway) made every
    # routed call a 422 on `pickwise.exclude`, a field the caller never sent, as the defaults' lists once did
    import httpx

    from tests.api_support import TOKEN

    with limited(served, tiny_predictor, {"exclude": ["dear", "down"]}) as url:
        client = sdk(url)
        assert create(client)[0].headers["x-pickwise-model"] == "cheap"
        assert httpx.delete(url + "/v1/models/dear", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert create(client)[0].headers["x-pickwise-model"] == "cheap"
        assert create(client, extra_body={"pickwise": {"objective": "max_quality"}})[0].headers["x-pickwise-model"] == "mid"
        with pytest.raises(openai.ConflictError) as infeasible:  # a 409 reports the limits as they were set
            create(client, extra_body={"pickwise": {"min_quality": 0.999}})
        assert infeasible.value.body["server_limits"]["exclude"] == ["dear", "down"]
