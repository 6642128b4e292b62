"""The registry over HTTP: reads, bearer-token writes, register -> route -> delete, writes under load."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from fastapi.testclient import TestClient

from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings
from pickwise.registry import load_registry, store
from pickwise.registry.store import specs_to_yaml
from tests.api_support import PROMPT, TOKEN, TRAINED, UNTRAINED, client, copy_models, new_model

AUTH = {"Authorization": f"Bearer {TOKEN}"}
YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}


def test_list_and_get_models(api, registry_dir):
    body = api.get("/v1/models").json()
    assert [m["name"] for m in body["models"]] == sorted([*TRAINED, UNTRAINED])
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["gpt-4-1106-preview"]["scoring"] == "trained"
    assert by_name[UNTRAINED]["scoring"] == "population" and by_name[UNTRAINED]["low_confidence"]
    assert {m["source"] for m in body["models"]} == {"registry"}  # one directory: no shipped layer under it
    one = api.get("/v1/models/Llama-2-7b-hf").json()
    assert one["model"]["pricing"]["input_per_million"] == 0.2 and one["registry_version"] == body["registry_version"]
    r = api.get("/v1/models/no-such-model")
    assert r.status_code == 404 and "no-such-model" in r.json()["detail"]
    assert str(registry_dir) not in r.json()["detail"]  # the server's paths are not the client's business
    assert "did you mean 'gpt-4-1106-preview'" in api.get("/v1/models/gpt-4").json()["detail"]


def test_a_layered_registry_says_which_models_ship_and_which_are_the_users(tmp_path, monkeypatch, tiny_predictor):
    """`source`, as `pickwise models list` shows it: a client can tell the user's models from the shipped ones."""
    monkeypatch.setenv("PICKWISE_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "registry").mkdir(parents=True)
    (tmp_path / "home" / "registry" / "mine.yaml").write_text(yaml.safe_dump(new_model("mine")))
    app = create_app(None, predictor=tiny_predictor, settings=ServiceSettings(job_store=str(tmp_path / "jobs.sqlite")))
    with TestClient(app) as api:
        sources = {m["name"]: m["source"] for m in api.get("/v1/models").json()["models"]}
        assert api.get("/v1/models/mine").json()["model"]["source"] == "user"
    assert sources.pop("mine") == "user" and set(sources.values()) == {"shipped"}


def test_writes_are_refused_when_no_token_is_configured(registry_dir, tiny_predictor):
    with client(registry_dir, tiny_predictor, admin_token=None) as c:
        for r in (c.post("/v1/models", json=new_model("m1"), headers=AUTH), c.delete("/v1/models/claude-v2", headers=AUTH)):
            assert r.status_code == 403 and "PICKWISE_ADMIN_TOKEN" in r.json()["detail"]
    assert "m1" not in load_registry(registry_dir)


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 403),
    ({"Authorization": f"Basic {TOKEN}"}, 401),  # not a bearer token at all
    ({"Authorization": f"Bearer {TOKEN}x"}, 403),
])
def test_write_auth(api, registry_dir, headers, status):
    r = api.post("/v1/models", json=new_model("m1"), headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] == ("unauthorized" if status == 401 else "forbidden")
    if status == 401:
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert api.delete("/v1/models/claude-v2", headers=headers).status_code == status
    assert "m1" not in load_registry(registry_dir) and "claude-v2" in load_registry(registry_dir)


def test_register_yaml_then_select_it_then_delete_it(api, registry_dir):
    text = "# added over HTTP\n" + yaml.safe_dump(new_model("acme-fast", aliases=["fast"]), sort_keys=False)
    r = api.post("/v1/models", content=text, headers={**AUTH, **YAML})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == "/v1/models/acme-fast"
    assert r.json()["model"]["scoring"] == "similar_to"
    assert "acme-fast" in load_registry(registry_dir)  # on disk, atomically written
    assert (registry_dir / "acme-fast.yaml").read_text() == text  # written as given, comment kept

    r = api.post("/v1/select", json={"prompt": PROMPT, "models": ["fast"]})
    body = r.json()
    assert r.status_code == 200 and body["chosen"] == ["fast"]  # answered under the alias asked for
    assert body["resolved"] == {"fast": "acme-fast"}
    assert "fast" in body["low_confidence"]  # scored like gpt-4: a prior, flagged
    # cheapest model in the registry now, so min_cost picks it without an allow-list too
    assert api.post("/v1/select", json={"prompt": PROMPT}).json()["chosen"] == ["acme-fast"]

    r = api.delete("/v1/models/acme-fast", headers=AUTH)
    assert r.status_code == 200 and r.json()["removed"] == "acme-fast"
    assert api.get("/v1/models/acme-fast").status_code == 404
    body = api.post("/v1/select", json={"prompt": PROMPT}).json()
    assert "acme-fast" not in {c["name"] for c in body["candidates"]}
    r = api.post("/v1/select", json={"prompt": PROMPT, "models": ["acme-fast"]})
    assert r.status_code == 422 and "acme-fast" in r.json()["detail"]
    assert api.delete("/v1/models/acme-fast", headers=AUTH).status_code == 404


def test_register_json_with_a_benchmark_prior(api):
    entry = new_model("acme-json", probe={"benchmark_score": 0.9})
    r = api.post("/v1/models", content=json.dumps(entry), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["model"]["scoring"] == "benchmark_score"
    body = api.post("/v1/select", json={"prompt": PROMPT, "models": ["acme-json"]}).json()
    assert body["chosen"] == ["acme-json"] and 0 < body["quality"] < 1


def test_register_with_probe_results_is_fitted_and_routable_at_once(api):
    """The tiny artifact stores vectors for a synthetic probe set only: the shipped probe prompts a
    new model was scored on are encoded on demand, and the model is fitted and routable at once."""
    from pickwise.registry.probes.probe_set import load_probe_set

    ids = [e.prompt_id for e in load_probe_set()[:60]]
    entry = new_model("acme-probed", probe={"results": [{"prompt_id": i, "score": 1.0} for i in ids]})
    r = api.post("/v1/models", json=entry, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["model"]["scoring"] == "probe" and not r.json()["model"]["low_confidence"]
    body = api.post("/v1/select", json={"prompt": PROMPT, "models": ["acme-probed"]}).json()
    assert body["chosen"] == ["acme-probed"] and "acme-probed" not in body["left_out"]
    ghost = new_model("acme-ghost", probe={"results": [{"prompt_id": "ghost", "score": 1.0}]})
    r = api.post("/v1/models", json=ghost, headers=AUTH)  # errors name the body, not a file never written
    assert r.status_code == 422 and r.json()["detail"].startswith("<new model>: model 'acme-ghost'"), r.text


def test_invalid_models_are_422_listing_every_problem(api, registry_dir):
    bad = new_model("acme-bad", pricing={"input_per_milion": 1, "output_per_million": -2}, context_window=0)
    r = api.post("/v1/models", json=bad, headers=AUTH)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_model" and len(body["errors"]) >= 3
    fields = " ".join(str(e["field"]) for e in body["errors"])
    assert "input_per_milion" in fields and "output_per_million" in fields and "context_window" in fields
    assert all(e["model"] == "acme-bad" for e in body["errors"])

    r = api.post("/v1/models", json=new_model("claude-v2"), headers=AUTH)  # name taken
    assert r.status_code == 409 and r.json()["error"] == "conflict" and "already taken" in r.json()["detail"]
    assert r.json()["errors"][0]["model"] == "claude-v2"
    assert {k: r.json()["errors"][0][k] for k in ("file", "field", "line")} == {"file": "<new model>", "field": "name",
                                                                               "line": None}  # JSON: no lines
    text = yaml.safe_dump(new_model("acme-dup", aliases=["claude-v2"]), sort_keys=False)
    line = text.splitlines().index("- claude-v2") + 1
    r = api.post("/v1/models", content=text, headers={**AUTH, **YAML})
    assert r.status_code == 409 and {k: r.json()["errors"][0][k] for k in ("file", "field", "line")} == {
        "file": "<new model>", "field": "aliases[0]", "line": line}, r.text
    r = api.post("/v1/models", content="name: [unclosed", headers={**AUTH, **YAML})
    assert r.status_code == 422 and r.json()["errors"]
    r = api.post("/v1/models", content=b"\xff\xfe", headers={**AUTH, **YAML})
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"]
    r = api.post("/v1/models", content="name: x", headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/yaml" in r.json()["detail"]
    assert [m.name for m in load_registry(registry_dir).models] == sorted([*TRAINED, UNTRAINED])


def test_an_overlong_name_is_not_echoed_back_in_every_problem(api, registry_dir):
    """Each problem of an entry names its model; a 1,000,000-character name made a 4 MB answer to one missing
    field and four others (an echo per problem, twice): the label is cut, the name's own error says why."""
    name = "n" * 1_000_000
    entry = {k: v for k, v in new_model(name).items() if k != "expected_output_tokens"}
    r = api.post("/v1/models", json=entry, headers=AUTH)
    assert r.status_code == 422 and len(r.content) < 10_000, len(r.content)
    problems = {e["field"]: e for e in r.json()["errors"]}
    assert {"name", "expected_output_tokens"} <= set(problems)
    assert "at most 200 characters" in problems["name"]["message"]
    assert problems["expected_output_tokens"]["model"].startswith("n" * 50)
    assert [m.name for m in load_registry(registry_dir).models] == sorted([*TRAINED, UNTRAINED])


def test_a_json_model_with_a_syntax_error_says_where_like_yaml(api, registry_dir):
    """Invalid YAML names the line and column; invalid JSON named the line only."""
    r = api.post("/v1/models", content='{\n  "name": "x",\n  "provider": ,\n}', headers={**AUTH, **JSON})
    assert r.status_code == 422, r.text
    issue = r.json()["errors"][0]
    assert issue["line"] == 3 and issue["message"].startswith("invalid JSON (column 15): "), issue
    assert [m.name for m in load_registry(registry_dir).models] == sorted([*TRAINED, UNTRAINED])


def test_removing_the_last_model_is_409(tmp_path, tiny_predictor):
    directory = copy_models(tmp_path / "one", names=["gpt-4-1106-preview"])
    with client(directory, tiny_predictor) as c:
        r = c.delete("/v1/models/gpt-4-1106-preview", headers=AUTH)
        assert r.status_code == 409 and "last model" in r.json()["detail"]


def test_concurrent_selects_during_registry_writes_all_succeed(api):
    def select(i):
        return api.post("/v1/select", json={"prompt": f"{PROMPT} ({i})"})

    def churn(i):
        name = f"churn-{i}"
        added = api.post("/v1/models", json=new_model(name), headers=AUTH).status_code
        removed = api.delete(f"/v1/models/{name}", headers=AUTH).status_code
        return added, removed

    with ThreadPoolExecutor(8) as pool:
        selects = [pool.submit(select, i) for i in range(40)]
        writes = [pool.submit(churn, i) for i in range(6)]
        results = [f.result() for f in selects]
        assert [f.result() for f in writes] == [(201, 200)] * 6
    assert [r.status_code for r in results] == [200] * 40
    # every answer came from one consistent snapshot: its candidates are that version's models
    for r in results:
        names = {c["name"] for c in r.json()["candidates"]}
        assert {*TRAINED, UNTRAINED} <= names and len(names - {*TRAINED, UNTRAINED}) <= 6
    assert [m["name"] for m in api.get("/v1/models").json()["models"]] == sorted([*TRAINED, UNTRAINED])


def test_a_model_whose_figures_would_overflow_is_rejected_at_registration(api):
    """Registry sanity bounds keep every cost/latency estimate finite, so selection never sees inf."""
    absurd = new_model("acme-absurd", pricing={"input_per_million": 1e308, "output_per_million": 1e308})
    r = api.post("/v1/models", json=absurd, headers=AUTH)
    assert r.status_code == 422 and "pricing.input_per_million" in r.text
    assert api.get("/v1/models/acme-absurd").status_code == 404
    assert api.post("/v1/select", json={"prompt": PROMPT}).status_code == 200


def test_a_plan_naming_one_model_by_name_and_alias_is_422(api):
    assert api.post("/v1/models", json=new_model("acme-twin", aliases=["acme-alias"]), headers=AUTH).status_code == 201
    prompts = [{"id": "a", "quality": {"acme-twin": 0.9, "acme-alias": 0.2}, "prompt_tokens": 10}]
    r = api.post("/v1/plan", json={"prompts": prompts})  # used to be 200 with the 0.9 silently dropped
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"][-1] == "acme-alias" and "names the same model as 'acme-twin'" in r.json()["detail"]


def test_a_plan_allow_list_naming_one_model_twice_is_422_at_submission(api):
    assert api.post("/v1/models", json=new_model("acme-twin", aliases=["acme-alias"]), headers=AUTH).status_code == 201
    prompts = [{"id": "a", "quality": {"acme-twin": 0.9}, "prompt_tokens": 10}]
    for models, says in ((["acme-twin", "acme-twin"], "'acme-twin' is given twice"),
                         (["acme-twin", "acme-alias"], "'acme-alias' names the same model as 'acme-twin'")):
        for route in ("/v1/plan", "/v1/plans"):  # used to run the plan (a job: 202)
            r = api.post(route, json={"prompts": prompts, "models": models})
            assert r.status_code == 422, (route, r.text)
            assert r.json()["errors"][0]["loc"] == ["body", "models"] and says in r.json()["detail"]


def _ready_when(api, condition, timeout_s=5.0) -> dict:
    """/readyz's body once `condition` holds (its reload runs in the background), or when time is up."""
    deadline = time.monotonic() + timeout_s
    while not condition(ready := api.get("/readyz").json()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return ready


def test_the_service_sees_registry_files_edited_on_disk_and_reports_a_broken_edit(api, registry_dir):
    """The README promised reloads; the service used to serve its start-up snapshot until a write."""
    registry = api.app.state.pickwise.service.registry
    registry.check_interval_s = 0.0
    (registry_dir / "by-hand.yaml").write_text(yaml.safe_dump(new_model("acme-by-hand")))
    assert api.get("/v1/models/acme-by-hand").status_code == 200
    body = api.post("/v1/select", json={"prompt": PROMPT, "models": ["acme-by-hand"]}).json()
    assert body["chosen"] == ["acme-by-hand"]
    (registry_dir / "by-hand.yaml").write_text("name: acme-by-hand\npricing: [\n")
    ready = _ready_when(api, lambda ready: ready["registry_error"] is not None)
    assert "by-hand.yaml" in ready["registry_error"] and ready["models"] == len(TRAINED) + 2
    assert api.get("/v1/models/acme-by-hand").status_code == 200  # the last good snapshot keeps serving
    (registry_dir / "by-hand.yaml").unlink()
    assert _ready_when(api, lambda ready: ready["registry_error"] is None)["registry_error"] is None
    assert api.get("/v1/models/acme-by-hand").status_code == 404


def test_adding_while_the_registry_on_disk_is_broken_is_a_conflict_not_the_clients_fault(api, registry_dir):
    (registry_dir / "zz-broken.yaml").write_text("name: broken\npricing: [\n")
    r = api.post("/v1/models", json=new_model("acme-innocent"), headers=AUTH)
    assert r.status_code == 409 and r.json()["error"] == "conflict", r.text
    assert "files on disk do not load" in r.json()["detail"] and "zz-broken.yaml" in r.json()["detail"]
    assert not any("innocent" in p.name for p in registry_dir.iterdir())


def test_a_model_with_a_lone_surrogate_is_refused_and_nothing_is_written(api, registry_dir):
    before = sorted(p.name for p in registry_dir.iterdir())
    for entry in (new_model("acme-surrogate", notes="x\udc00y"), new_model("acme-\ud800")):
        r = api.post("/v1/models", content=json.dumps(entry), headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 422 and "lone surrogate" in r.json()["detail"], r.text
    assert sorted(p.name for p in registry_dir.iterdir()) == before
    assert api.get("/v1/models").status_code == 200


def test_a_client_hanging_up_mid_body_is_a_499_not_a_500(registry_dir, tiny_predictor):
    """starlette's ClientDisconnect from request.body() was logged and counted as a server error."""
    import asyncio

    from pickwise.api.http.app import create_app
    from pickwise.api.http.settings import ServiceSettings

    app = create_app(registry_dir, predictor=tiny_predictor, settings=ServiceSettings(admin_token=TOKEN))
    messages = [{"type": "http.request", "body": b"name: x", "more_body": True}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    headers = [(b"content-type", b"application/yaml"), (b"authorization", f"Bearer {TOKEN}".encode()),
               (b"content-length", b"300")]
    scope = {"type": "http", "method": "POST", "path": "/v1/models", "raw_path": b"/v1/models", "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [499]


def test_put_replaces_a_model_atomically_or_registers_it(api, registry_dir):
    entry = new_model("acme-put", aliases=["put-alias"])
    assert api.put("/v1/models/acme-put", json=entry).status_code == 401  # admin only, like every write
    r = api.put("/v1/models/acme-put", json=entry, headers=AUTH)
    assert r.status_code == 201 and r.headers["Location"] == "/v1/models/acme-put", r.text
    changed = {**entry, "pricing": {"input_per_million": 0.5, "output_per_million": 0.7}}
    r = api.put("/v1/models/put-alias", json=changed, headers=AUTH)  # by alias too
    assert r.status_code == 200 and r.json()["model"]["pricing"]["input_per_million"] == 0.5, r.text
    assert load_registry(registry_dir).get("acme-put").pricing.input_per_million == 0.5
    r = api.put("/v1/models/acme-put", json=new_model("someone-else"), headers=AUTH)
    assert r.status_code == 422 and "not 'acme-put'" in r.json()["detail"]
    r = api.put("/v1/models/acme-put", json={**entry, "aliases": ["Llama-2-7b-hf"]}, headers=AUTH)
    assert r.status_code == 409  # an alias of another model is taken, replace or not


def test_a_broken_file_written_during_a_post_shows_on_readyz(api, registry_dir, monkeypatch):
    """The POST recorded the disk as it was after its write, broken file included: /readyz said no error
    while the next POST got 409."""
    from pickwise.registry import loader

    real, pending = loader.parse_registry_text, [True]

    def parse(*args, **kwargs):
        if pending:
            pending.pop()
            (registry_dir / "zz-broken.yaml").write_text("name: broken\npricing: [\n")
        return real(*args, **kwargs)

    api.app.state.pickwise.service.registry.check_interval_s = 0.0
    monkeypatch.setattr(loader, "parse_registry_text", parse)
    assert api.post("/v1/models", json=new_model("acme-racing"), headers=AUTH).status_code == 201
    assert "zz-broken.yaml" in (_ready_when(api, lambda ready: ready["registry_error"] is not None)["registry_error"] or "")


@pytest.mark.parametrize("mishap", ["directory", "self_link", "dangling_link"])
def test_a_registry_file_the_server_cannot_read_is_an_error_not_vanished_models(api, registry_dir, mishap):
    """A file replaced by a directory or a broken link used to be skipped: its models were gone (404)
    and registry_error stayed null."""
    api.app.state.pickwise.service.registry.check_interval_s = 0.0
    (registry_dir / "extra.yaml").write_text(yaml.safe_dump(new_model("acme-extra")))
    assert api.get("/v1/models/acme-extra").status_code == 200
    extra = registry_dir / "extra.yaml"
    extra.unlink()
    if mishap == "directory":
        extra.mkdir()
    elif mishap == "self_link":
        extra.symlink_to("extra.yaml")
    else:
        extra.symlink_to("gone.yaml")
    assert api.get("/v1/models/acme-extra").status_code == 200  # the last good snapshot keeps serving
    ready = api.get("/readyz").json()
    assert ready["models"] == len(TRAINED) + 2 and "extra.yaml: cannot read the file" in ready["registry_error"]


def _stale(api):
    """The service has not looked at the disk since: a delete must look itself."""
    api.app.state.pickwise.service.registry.check_interval_s = 3600.0


def test_delete_works_from_the_files_on_disk_now(api, registry_dir):
    """Each of these hand edits used to make DELETE answer 500 (YamlSyntaxError, FileNotFoundError,
    'coroutine raised StopIteration')."""
    assert api.post("/v1/models", json=new_model("acme-own"), headers=AUTH).status_code == 201
    own = registry_dir / "acme-own.yaml"
    _stale(api)

    own.write_text("name: acme-own\npricing: [\n")  # its own file broken
    r = api.delete("/v1/models/acme-own", headers=AUTH)
    assert r.status_code == 409 and "acme-own.yaml:3" in r.json()["detail"], r.text
    assert own.read_text() == "name: acme-own\npricing: [\n"

    own.unlink()  # its file gone while another is broken
    (registry_dir / "zz-broken.yaml").write_text("name: broken\npricing: [\n")
    r = api.delete("/v1/models/acme-own", headers=AUTH)
    assert r.status_code == 409 and "zz-broken.yaml" in r.json()["detail"], r.text
    (registry_dir / "zz-broken.yaml").unlink()

    snapshot = load_registry(registry_dir)  # the model removed by hand from the multi-model file
    (registry_dir / "models.yaml").write_text(specs_to_yaml([s for s in snapshot.models if s.name != UNTRAINED]))
    r = api.delete(f"/v1/models/{UNTRAINED}", headers=AUTH)
    assert r.status_code == 404, r.text

    (registry_dir / "by-hand.yaml").write_text(yaml.safe_dump(new_model("acme-by-hand")))  # added by hand
    assert api.delete("/v1/models/acme-by-hand", headers=AUTH).status_code == 200
    assert sorted(load_registry(registry_dir).names()) == sorted(TRAINED)
    assert api.get("/readyz").json()["registry_error"] is None


def test_delete_refuses_a_file_changed_while_it_removes(api, registry_dir, monkeypatch):
    from pickwise.registry import loader

    _stale(api)
    real = loader.load_registry
    edited = "# edited by hand\n" + (registry_dir / "models.yaml").read_text()

    def racing(*args, **kwargs):
        snapshot = real(*args, **kwargs)
        (registry_dir / "models.yaml").write_text(edited)
        return snapshot

    monkeypatch.setattr(store, "load_registry", racing)
    r = api.delete(f"/v1/models/{UNTRAINED}", headers=AUTH)
    assert r.status_code == 409 and "models.yaml changed while" in r.json()["detail"], r.text
    assert (registry_dir / "models.yaml").read_text() == edited


def test_errors_name_registry_files_relative_to_the_registry(api, registry_dir, caplog):
    """/readyz and the 409 detail showed the broken file's absolute path, which 404s take care to hide."""
    import logging

    caplog.set_level(logging.INFO, logger="pickwise.registry")
    api.app.state.pickwise.service.registry.check_interval_s = 0.0
    (registry_dir / "zz-broken.yaml").write_text("name: broken\npricing: [\n")
    api.get("/v1/models")
    error = api.get("/readyz").json()["registry_error"]
    conflict = api.post("/v1/models", json=new_model("acme-x"), headers=AUTH).json()["detail"]
    removal = api.delete(f"/v1/models/{UNTRAINED}", headers=AUTH).json()["detail"]
    for text in (error, conflict, removal):
        assert "zz-broken.yaml:3" in text and str(registry_dir) not in text and "/zz-broken" not in text, text
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert failures and all(str(registry_dir) not in m and "zz-broken.yaml:3" in m for m in failures)
    (registry_dir / "zz-broken.yaml").write_text(yaml.safe_dump(new_model("acme-by-hand")))
    api.get("/v1/models")
    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("registry loaded")]
    assert loaded == [f"registry loaded: {len(TRAINED) + 2} models, version {api.get('/readyz').json()['registry_version']}"]


def test_selects_and_readyz_never_wait_for_a_registry_write(api, monkeypatch):
    """select and /readyz refreshed the registry on the event loop: a POST parsing a big model held the
    registry's lock, and every request of the server waited for it (3.8 s in the report)."""
    from pickwise.registry import loader

    api.app.state.pickwise.service.registry.check_interval_s = 0.0
    real, started = loader.parse_registry_text, threading.Event()

    def slow(text, path, issues):
        if "acme-slow" in text:
            started.set()
            time.sleep(2.0)
        return real(text, path, issues)

    monkeypatch.setattr(loader, "parse_registry_text", slow)
    with ThreadPoolExecutor(1) as pool:
        post = pool.submit(api.post, "/v1/models", json=new_model("acme-slow"), headers=AUTH)
        assert started.wait(5)
        t0 = time.monotonic()
        assert api.post("/v1/select", json={"prompt": PROMPT}).status_code == 200
        assert api.get("/readyz").status_code == 200
        waited = time.monotonic() - t0
        assert post.result().status_code == 201
    assert waited < 1.0, waited


def test_free_text_is_capped(api):
    r = api.post("/v1/models", json=new_model("acme-long", notes="x" * 10_001), headers=AUTH)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "notes", r.text
    r = api.post("/v1/models", json=new_model("acme-tags", tags=[f"t{i}" for i in range(101)]), headers=AUTH)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tags", r.text
    assert api.post("/v1/models", json=new_model("acme-ok", notes="x" * 10_000), headers=AUTH).status_code == 201


@pytest.mark.parametrize("look_alike", [
    "gpt\u20104\u20101106\u2010preview",  # U+2010 hyphens
    "gpt-4-1106-previ\u0435w",  # Cyrillic e
    "\uff47pt-4-1106-preview",  # fullwidth g
    "gpt-4-1106-prev\u03b9ew",  # Greek iota
])
def test_a_look_alike_of_a_registered_name_is_refused(api, registry_dir, look_alike):
    """Each of these was a second model (201) beside gpt-4-1106-preview, which a reader cannot tell apart."""
    before = sorted(p.name for p in registry_dir.iterdir())
    r = api.post("/v1/models", json=new_model(look_alike), headers=AUTH)
    assert r.status_code == 409 and "already taken by model 'gpt-4-1106-preview'" in r.json()["detail"], r.text
    r = api.post("/v1/models", json=new_model("acme-new", aliases=[look_alike]), headers=AUTH)
    assert r.status_code == 409, r.text
    assert sorted(p.name for p in registry_dir.iterdir()) == before


def test_names_are_kept_in_nfkc(api):
    assert api.post("/v1/models", json=new_model("\u00e9vil"), headers=AUTH).status_code == 201  # precomposed
    r = api.post("/v1/models", json=new_model("e\u0301vil"), headers=AUTH)  # decomposed
    assert r.status_code == 409, r.text
    assert api.get("/v1/models/e\u0301vil").json()["model"]["name"] == "\u00e9vil"
    assert api.get("/v1/models/\uff47pt-4-1106-preview").json()["model"]["name"] == "gpt-4-1106-preview"


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("name", ["../../../etc/passwd", "..", "acme/a b?c#d%e"])
def test_location_is_one_encoded_segment_that_leads_back_to_the_model(api, name, method):
    """`Location: /v1/models/../../../etc/passwd` kept the dot segments: a client resolves it to /etc/passwd
    (PUT registering a new model still wrote its Location that way)."""
    from pickwise.api.http.routes.models import model_url

    url = "/v1/models" if method == "POST" else model_url(name)
    r = api.request(method, url, json=new_model(name), headers=AUTH)
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith("/v1/models/") and "/" not in location[len("/v1/models/"):], location
    assert ".." not in location.split("/") and "?" not in location and "#" not in location
    assert api.get(location).json()["model"]["name"] == name
