"""The gateway's server-side routing policy (PICKWISE_GATEWAY_DEFAULTS, `serve --gateway-defaults`):
the official OpenAI SDK against pickwise on loopback, forwarding to the loopback upstream."""
from __future__ import annotations

import json
import logging

import openai
import pytest

from bench.openai_upstream import Upstream
from pickwise.api.cli.main import main
from pickwise.api.http.settings import ServiceSettings
from tests.gateway_support import KEY_ENV, UPSTREAM_KEY, pickwise_server, served_registry
from tests.test_gateway import create, sdk

DOWN = ["down"]  # nothing listens for 'down': left out so each call is answered at its first attempt


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(a registry served by a loopback upstream, the upstream)."""
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    with Upstream(key=UPSTREAM_KEY).running() as up:
        yield served_registry(tmp_path / "registry", up.base_url), up


def policy_server(served, tiny_predictor, defaults: dict):
    return pickwise_server(served[0], tiny_predictor, gateway_defaults=json.dumps(defaults))


def test_the_servers_defaults_route_a_stock_client_and_a_request_overrides_them_field_by_field(served, tiny_predictor,
                                                                                              caplog):
    caplog.set_level(logging.INFO, logger="pickwise.gateway")
    with policy_server(served, tiny_predictor, {"objective": "max_quality", "exclude": ["dear", *DOWN]}) as url:
        client = sdk(url)
        raw, _ = create(client)  # no extra_body: what an app with a stock OpenAI client sends
        # the built-in min_cost would take 'cheap'; the server's policy takes the best left, 'mid'
        assert (raw.headers["x-pickwise-model"], raw.headers["x-pickwise-policy"]) == ("mid", "server")
        decided = [r.getMessage() for r in caplog.records if raw.headers["x-pickwise-decision-id"] in r.getMessage()]
        assert 'server options {"objective":"max_quality","exclude":["dear","down"]}' in decided[0]  # what applied
        raw, _ = create(client, extra_body={"pickwise": {"objective": "min_cost"}})
        assert (raw.headers["x-pickwise-model"], raw.headers["x-pickwise-policy"]) == ("cheap", "server+request")
        raw, _ = create(client, extra_body={"pickwise": {"exclude": DOWN}})  # the objective stays the server's
        assert raw.headers["x-pickwise-model"] == "dear"
        raw, _ = create(client, extra_body={"pickwise": {"objective": None, "exclude": None}})  # null: unset
        assert (raw.headers["x-pickwise-model"], raw.headers["x-pickwise-policy"]) == ("mid", "server")
        raw, _ = create(client, model="cheap")  # a named model is forwarded as named: no policy applies
        assert raw.headers["x-pickwise-model"] == "cheap" and "x-pickwise-policy" not in raw.headers


def test_a_default_floor_holds_until_a_request_lifts_it_and_a_bad_default_name_is_blamed(served, tiny_predictor):
    defaults = {"min_quality": 0.99, "allow_low_confidence": True, "exclude": DOWN,
                "objective": "balanced", "willingness_to_pay": 1.0}
    with policy_server(served, tiny_predictor, defaults) as url:
        client = sdk(url)
        with pytest.raises(openai.ConflictError) as infeasible:
            create(client)
        # the caller sent no floor: the 409 says which of the server's defaults applied
        assert infeasible.value.body["server_defaults"] == defaults
        raw, _ = create(client, extra_body={"pickwise": {"min_quality": 0, "objective": "min_cost"}})  # 0: no floor
        # its own objective drops the default's willingness_to_pay, which belongs to 'balanced'
        assert (raw.headers["x-pickwise-model"], raw.headers["x-pickwise-policy"]) == ("cheap", "server+request")
        raw, _ = create(client, extra_body={"pickwise": {"min_quality": 0, "objective": "balanced"}})
        assert raw.status_code == 200  # asking for the server's own objective keeps its price (it was a 422)
        with pytest.raises(openai.UnprocessableEntityError) as wrong:
            create(client, extra_body={"pickwise": {"willingness_to_pay": 1.0, "objective": "max_quality"}})
        assert wrong.value.body["param"] == "pickwise"  # the request's own mix is its own error
    with policy_server(served, tiny_predictor, {"models": ["gone"], "on_infeasible": "best_quality"}) as url:
        # model names are checked when a request is routed (the registry can change while serving)
        with pytest.raises(openai.UnprocessableEntityError) as unknown:
            create(sdk(url))
        assert unknown.value.body["param"] == "pickwise.models"
        assert "PICKWISE_GATEWAY_DEFAULTS" in unknown.value.message
        raw, _ = create(sdk(url), extra_body={"pickwise": {"models": ["mid", "dear"], "min_quality": 0.99}})
        assert raw.headers["x-pickwise-model"] == "dear"  # the default on_infeasible: the best, below the floor


def test_a_model_removed_while_serving_leaves_the_servers_lists_instead_of_refusing_every_call(served, tiny_predictor):
    # serve checks the policy's names at startup; one removed later excluded nothing yet made every call of
    # a stock client a 422 it could not fix
    import httpx

    from tests.api_support import TOKEN

    defaults = {"objective": "max_quality", "exclude": ["dear", *DOWN], "models": ["mid", "dear", "cheap"]}
    with policy_server(served, tiny_predictor, defaults) as url:
        client = sdk(url)
        assert create(client)[0].headers["x-pickwise-model"] == "mid"
        assert httpx.delete(url + "/v1/models/dear", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        raw, _ = create(client)
        assert (raw.headers["x-pickwise-model"], raw.headers["x-pickwise-policy"]) == ("mid", "server")
        assert create(client, extra_body={"pickwise": {"models": ["cheap"]}})[0].headers["x-pickwise-model"] == "cheap"
        with pytest.raises(openai.ConflictError) as infeasible:
            create(client, extra_body={"pickwise": {"min_quality": 0.999}})
        # what applied: the lists as the registry stands
        assert infeasible.value.body["server_defaults"]["exclude"] == DOWN
        assert infeasible.value.body["server_defaults"]["models"] == ["mid", "cheap"]


def test_a_bad_default_stops_serve_naming_the_field(registry_dir, tmp_path, capsys, monkeypatch):
    args = ["serve", "--registry", str(registry_dir), "--artifact", str(tmp_path)]
    assert main([*args, "--gateway-defaults", '{"min_quality": 1.5}']) == 2
    assert "--gateway-defaults: min_quality: Input should be less than or equal to 1" in capsys.readouterr().err
    monkeypatch.setenv("PICKWISE_GATEWAY_DEFAULTS", '{"objective": "cheapest", "max_attempts": 3}')
    assert main(args) == 2
    assert "PICKWISE_GATEWAY_DEFAULTS: objective: Input should be 'min_cost', 'max_quality' or 'balanced'" \
        in capsys.readouterr().err
    monkeypatch.setenv("PICKWISE_GATEWAY_DEFAULTS", '{"min_qualty": 0.5}')
    assert main(args) == 2
    assert "min_qualty: Extra inputs are not permitted" in capsys.readouterr().err
    monkeypatch.setenv("PICKWISE_GATEWAY_DEFAULTS", "min_quality=0.5")
    assert main(args) == 2
    assert "PICKWISE_GATEWAY_DEFAULTS: not JSON" in capsys.readouterr().err
    monkeypatch.setenv("PICKWISE_GATEWAY_DEFAULTS", '{"exclude": ["claude-v2x"]}')  # a typo would exclude nothing
    assert main([*args[:-1], str(tmp_path / "missing")]) == 2  # checked first: a valid one is not served here
    assert "PICKWISE_GATEWAY_DEFAULTS: exclude: unknown model 'claude-v2x'" in capsys.readouterr().err


def test_serve_workers_get_the_defaults_through_the_environment(monkeypatch):
    settings = ServiceSettings(gateway_defaults='{"min_quality": 0.6, "exclude": ["a"]}')
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    assert ServiceSettings().gateway_options == {"min_quality": 0.6, "exclude": ["a"]}
