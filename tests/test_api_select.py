"""POST /v1/select end to end on the tiny predictor, plus health, readiness, limits and metrics."""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings
from pickwise.api.http.telemetry import sample_total
from pickwise.api.schemas import MAX_PROMPT_CHARS
from tests.api_support import PROMPT, TRAINED, UNTRAINED, RecordingPredictor, client


def test_select_returns_the_decision_with_every_candidate(api, tiny_predictor):
    r = api.post("/v1/select", json={"prompt": PROMPT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["chosen"]) == 1
    names = {c["name"] for c in body["candidates"]}
    assert names == {*TRAINED, UNTRAINED}
    chosen = [c for c in body["candidates"] if c["chosen"]]
    assert [c["name"] for c in chosen] == body["chosen"]
    # min_cost with no floor: the cheapest candidate wins
    assert body["cost_usd"] == min(c["cost_usd"] for c in body["candidates"])
    assert body["predictor_version"] == tiny_predictor.version
    assert body["registry_version"] and body["prompt_tokens"] > 5 and body["truncated"] is False
    # the model the artifact never saw is scored from a prior and says so
    untrained = next(c for c in body["candidates"] if c["name"] == UNTRAINED)
    assert untrained["low_confidence"]


def test_select_matches_a_direct_predictor_call(api, tiny_predictor):
    body = api.post("/v1/select", json={"prompt": PROMPT, "models": TRAINED}).json()
    expected = tiny_predictor.predict([PROMPT], TRAINED)[0]
    got = {c["name"]: c["quality"] for c in body["candidates"]}
    for name, q in zip(TRAINED, expected):
        assert got[name] == pytest.approx(q, rel=1e-5)


def test_quality_floor_and_allow_list_are_applied(api):
    everything = api.post("/v1/select", json={"prompt": PROMPT}).json()
    best = max(everything["candidates"], key=lambda c: c["quality"])
    r = api.post("/v1/select", json={"prompt": PROMPT, "min_quality": best["quality"]})
    assert r.status_code == 200 and r.json()["chosen"] == [best["name"]]
    r = api.post("/v1/select", json={"prompt": PROMPT, "models": ["gpt-4-1106-preview"]})
    body = r.json()
    assert body["chosen"] == ["gpt-4-1106-preview"]
    others = [c for c in body["candidates"] if c["name"] != "gpt-4-1106-preview"]
    assert all("not in allow-list" in c["excluded_by"] for c in others)


def test_model_sets_combine_quality(api):
    r = api.post("/v1/select", json={"prompt": PROMPT, "max_models": 2, "objective": "max_quality"})
    body = r.json()
    assert r.status_code == 200 and len(body["chosen"]) == 2
    members = [c["quality"] for c in body["candidates"] if c["chosen"]]
    assert body["quality"] == pytest.approx(1 - (1 - members[0]) * (1 - members[1]))


def test_infeasible_is_409_naming_each_models_blocking_constraints(api):
    r = api.post("/v1/select", json={"prompt": PROMPT, "max_cost_usd": 1e-9, "max_latency_ms": 1})
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "infeasible"
    assert set(body["blocking"]) == {*TRAINED, UNTRAINED}
    assert all({"cost cap", "latency cap"} <= set(why) for why in body["blocking"].values())
    assert "cost cap" in body["detail"]


def test_infeasible_with_fallback_returns_a_choice_flagged_as_fallback(api):
    r = api.post("/v1/select", json={"prompt": PROMPT, "max_cost_usd": 1e-9, "on_infeasible": "cheapest"})
    assert r.status_code == 200
    assert r.json()["fallback"] == "cheapest" and r.json()["violates"] == ["cost cap"]


@pytest.mark.parametrize("body, field", [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": " \n\t "}, "prompt"),  # whitespace is no prompt either
    ({"prompt": PROMPT, "min_quality": 1.5}, "min_quality"),
    ({"prompt": PROMPT, "max_models": 4}, "max_models"),
    ({"prompt": PROMPT, "objective": "cheapest"}, "objective"),
    ({"prompt": PROMPT, "min_qualty": 0.5}, "min_qualty"),
    ({"prompt": PROMPT, "max_cost_usd": "lots"}, "max_cost_usd"),
    ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"),
    ({"prompt": PROMPT, "min_quality": True}, "min_quality"),  # not coerced to 1.0
    ({"prompt": PROMPT, "min_quality": "0.5"}, "min_quality"),  # a string is not a number
    ({"prompt": PROMPT, "max_models": 2.0}, "max_models"),
    ({"prompt": PROMPT, "models": []}, "models"),  # an empty allow-list: only ever infeasible (it was a 409)
])
def test_bad_bodies_are_422_naming_the_field(api, body, field):
    r = api.post("/v1/select", json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["error"] == "validation_error"
    assert any(e["loc"][-1] == field for e in err["errors"]), err
    assert field in err["detail"]


def test_unknown_model_in_allow_list_is_422_naming_the_field(api):
    r = api.post("/v1/select", json={"prompt": PROMPT, "exclude": ["no-such-model"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "exclude"] and "no-such-model" in r.json()["detail"]


def test_a_deny_list_that_denies_the_whole_allow_list_is_422_not_infeasible(api, tiny_predictor):
    """`models: [A], exclude: [A]` contradicts itself: it was a 409 saying no single change of the floor or
    caps helps, and the CLI listed no model under "what blocks each model asked for"."""
    r = api.post("/v1/select", json={"prompt": PROMPT, "models": [TRAINED[0], TRAINED[1]],
                                     "exclude": [TRAINED[1], TRAINED[0]]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "exclude"], r.text
    assert TRAINED[0] in r.json()["detail"] and "nothing is left" in r.json()["detail"]
    narrowed = api.post("/v1/select", json={"prompt": PROMPT, "models": TRAINED[:2], "exclude": [TRAINED[1]]})
    assert narrowed.status_code == 200 and narrowed.json()["chosen"] == [TRAINED[0]]


def test_an_unknown_model_named_short_is_422_with_the_name_it_meant(api):
    r = api.post("/v1/select", json={"prompt": PROMPT, "models": ["nothing-like-it", "gpt-4"]})
    assert r.status_code == 422  # each hint right after the name it is for
    assert ("unknown model(s) 'nothing-like-it', 'gpt-4' (did you mean 'gpt-4-1106-preview'?) (not in the registry: "
            "see GET /v1/models)") in r.json()["detail"]


def test_an_answer_longer_than_every_models_max_output_names_that_and_the_length_that_fits(api, registry_dir):
    from pickwise.registry import load_registry

    rooms = {s.name: s.max_output_tokens for s in load_registry(registry_dir).models}
    r = api.post("/v1/select", json={"prompt": "hi", "expected_output_tokens": 100_000})
    assert r.status_code == 409
    body = r.json()
    assert all("max output tokens" in why for why in body["blocking"].values()), body["blocking"]
    assert body["way_out"] == {"expected_output_tokens": max(rooms.values())}
    assert f"way out: expected_output_tokens {max(rooms.values())}" in body["detail"]
    ok = api.post("/v1/select", json={"prompt": "hi", "expected_output_tokens": body["way_out"]["expected_output_tokens"]})
    assert ok.status_code == 200
    report = next(c for c in ok.json()["candidates"] if c["name"] == ok.json()["chosen"][0])
    assert report["fits_output"] and report["fits_context"]


def test_balanced_without_willingness_to_pay_is_422(api):
    r = api.post("/v1/select", json={"prompt": PROMPT, "objective": "balanced"})
    assert r.status_code == 422 and "willingness_to_pay" in r.json()["detail"]
    r = api.post("/v1/select", json={"prompt": PROMPT, "willingness_to_pay": 5})  # would be silently ignored
    assert r.status_code == 422 and "applies only to objective 'balanced'" in r.json()["detail"]


def test_malformed_json_is_422_saying_what_and_where(api):
    r = api.post("/v1/select", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    r = api.post("/v1/select", content='{"prompt": "é",\n "min_quality": }'.encode(),
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"] == "body: not valid JSON: Expecting value at line 2, column 17", r.json()


def test_a_key_sent_twice_is_refused_not_read_as_the_last(api):
    r = api.post("/v1/select", content=b'{"prompt": "hi", "options": {}, "prompt": "yo"}',
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    assert "'prompt' appears twice" in r.json()["detail"], r.json()
    nested = api.post("/v1/plan", content=b'{"prompts": [{"id": "a", "id": "b", "prompt": "hi"}]}',
                      headers={"Content-Type": "application/json"})
    assert nested.status_code == 422 and "'id' appears twice" in nested.json()["detail"]


def test_a_key_sent_twice_is_listed_in_errors_like_every_validation_error(api):
    """Every 422 validation_error lists `errors: [{loc, msg, type}]` (README); this one had none, so a client
    reading them got a KeyError."""
    r = api.post("/v1/select", content=b'{"prompt": "hi", "prompt": "yo"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"] == [
        {"loc": ["body"], "msg": r.json()["detail"].removeprefix("body: "), "type": "json_invalid"}], r.json()


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_not_sent_as_json_says_to_send_json(api, content_type):
    # `curl -d '{...}'` without -H sends application/x-www-form-urlencoded: the body is never parsed
    headers = {"Content-Type": content_type} if content_type else {}
    r = api.post("/v1/select", content=b'{"prompt": "hi"}', headers=headers)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "is not JSON" in detail and "Content-Type: application/json" in detail, detail


def test_oversize_bodies_are_413(registry_dir, tiny_predictor):
    with client(registry_dir, tiny_predictor, max_body_bytes=2_000) as c:
        big = {"prompt": "x" * 5_000}
        r = c.post("/v1/select", json=big)  # Content-Length says too big: refused before reading
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

        def chunks():  # no Content-Length: caught while streaming
            for _ in range(10):
                yield b"x" * 500

        r = c.post("/v1/select", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "2,000-byte limit" in r.json()["detail"]
        assert c.post("/v1/select", json={"prompt": PROMPT}).status_code == 200


def test_unknown_route_and_method_are_json(api):
    r = api.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = api.get("/v1/select")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_health_ready_and_openapi(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz").json()
    assert ready["status"] == "ready" and ready["models"] == 4 and ready["predictor_precision"] == "fp32"
    spec = api.get("/openapi.json").json()
    assert {"/v1/select", "/v1/plan", "/v1/plans", "/v1/plans/{job_id}", "/v1/models", "/v1/models/{name}",
            "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert api.get("/docs").status_code == 200


def test_readyz_is_503_until_the_predictor_has_loaded(registry_dir, tiny_predictor):
    release = threading.Event()

    def slow_loader():
        release.wait(10)
        return tiny_predictor

    app = create_app(registry_dir, predictor=slow_loader, settings=ServiceSettings(admin_token=None))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"] == "not_ready" and r.headers["Retry-After"]
        assert c.post("/v1/select", json={"prompt": PROMPT}).status_code == 503
        release.set()
        deadline = time.monotonic() + 10
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/select", json={"prompt": PROMPT}).status_code == 200


def test_a_loaded_predictor_is_warmed_on_the_encoder_thread_before_ready(registry_dir, tiny_predictor):
    """The encoder thread's first call is slow (thread set-up); it happens before /readyz says ready."""
    from pickwise.api.service import WARM_UP_PROMPT

    recording = RecordingPredictor(tiny_predictor)
    app = create_app(registry_dir, predictor=lambda: recording, settings=ServiceSettings(admin_token=None))
    with TestClient(app) as c:
        deadline = time.monotonic() + 10
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recording.prompts == [WARM_UP_PROMPT]
        assert len(recording.threads) == 1 and next(iter(recording.threads)).startswith("pickwise-encode")
        assert c.post("/v1/select", json={"prompt": PROMPT}).status_code == 200
        assert recording.prompts == [WARM_UP_PROMPT, PROMPT] and len(recording.threads) == 1


def test_readyz_reports_a_failed_load(registry_dir):
    def broken_loader():
        raise FileNotFoundError("no artifact at /nowhere")

    app = create_app(registry_dir, predictor=broken_loader, settings=ServiceSettings(admin_token=None))
    with TestClient(app) as c:
        deadline = time.monotonic() + 10
        while "failed" not in c.get("/readyz").json()["detail"] and time.monotonic() < deadline:
            time.sleep(0.01)
        r = c.get("/readyz")
        assert r.status_code == 503 and "no artifact at /nowhere" in r.json()["detail"]


def test_concurrent_selects_are_micro_batched_and_counted(registry_dir, tiny_predictor):
    n = 12
    with client(registry_dir, tiny_predictor, max_wait_ms=200, max_batch=64) as c:
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda i: c.post("/v1/select", json={"prompt": f"{PROMPT} #{i}"}), range(n)))
        assert all(r.status_code == 200 for r in results)
        text = c.get("/metrics").text
    batches = sample_total(text, "pickwise_predictor_batch_size_count")
    prompts = sample_total(text, "pickwise_predictor_batch_size_sum")
    assert prompts == n
    assert batches < n  # so at least one predictor call encoded several requests' prompts
    assert sample_total(text, "pickwise_http_requests_total", endpoint="/v1/select", method="POST", status="200") == n
    assert sample_total(text, "pickwise_selections_total") == n
    assert sample_total(text, "pickwise_http_request_duration_seconds_count", endpoint="/v1/select") == n


def test_work_is_dropped_when_the_client_disconnects():
    import asyncio

    from starlette.requests import Request

    from pickwise.api.http.errors import ClientGone
    from pickwise.api.http.routes import unless_disconnected as _unless_disconnected

    scope = {"type": "http", "method": "POST", "path": "/v1/select", "headers": []}

    async def main():
        hung_up = asyncio.Event()

        async def receive():
            await hung_up.wait()
            return {"type": "http.disconnect"}

        # the answer arrives first: returned, the watcher is cancelled
        assert await _unless_disconnected(Request(scope, receive), asyncio.sleep(0, result="u")) == "u"
        # the client leaves first: the queued work is cancelled
        work = asyncio.ensure_future(asyncio.sleep(30))
        hung_up.set()
        try:
            await _unless_disconnected(Request(scope, receive), work)
        except ClientGone:
            await asyncio.sleep(0)
            return work.cancelled()
        return False

    assert asyncio.run(main())


def test_a_full_encoder_queue_answers_429_with_retry_after(registry_dir, tiny_predictor, monkeypatch):
    """Overload is refused at once, in the JSON error shape, instead of queueing without bound; the
    admitted requests are still answered once the encoder frees up."""
    entered, release = threading.Event(), threading.Event()
    encode = tiny_predictor.prompt_features

    def held_encoder(prompts, **kwargs):  # the real encoder, held busy until the test lets it go
        entered.set()
        release.wait(timeout=10)
        return encode(prompts, **kwargs)

    monkeypatch.setattr(tiny_predictor, "prompt_features", held_encoder)
    with client(registry_dir, tiny_predictor, max_batch=1, max_queue=1) as c, ThreadPoolExecutor(3) as pool:
        post = lambda i: c.post("/v1/select", json={"prompt": f"{PROMPT} #{i}"})  # noqa: E731
        first = pool.submit(post, 0)
        assert entered.wait(timeout=10)  # prompt 0 is in the encoder; the queue (1 place) is empty
        rest = [pool.submit(post, i) for i in (1, 2)]  # one takes the place, the other is refused
        refused = next(f for f in _first_done(rest)).result()
        release.set()
        answers = [first.result(), *(f.result() for f in rest)]
        text = c.get("/metrics").text
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    body = refused.json()
    assert body["error"] == "overloaded" and (body["waiting"], body["max_queue"]) == (1, 1)
    assert "waiting for the predictor" in body["detail"]
    assert sorted(r.status_code for r in answers) == [200, 200, 429]
    assert sample_total(text, "pickwise_http_requests_total", endpoint="/v1/select", method="POST", status="429") == 1


def _first_done(futures):
    done, _ = wait(futures, timeout=10, return_when=FIRST_COMPLETED)
    return done


def test_models_named_by_an_alias_are_answered_under_that_alias(tmp_path, tiny_predictor):
    from tests.api_support import registry_with_alias

    registry = registry_with_alias(tmp_path / "registry", "gpt-4-1106-preview", "gpt4")
    with client(registry, tiny_predictor) as api:
        body = api.post("/v1/select", json={"prompt": PROMPT, "models": ["gpt4", "Llama-2-7b-hf"],
                                            "objective": "max_quality"}).json()
        names = {c["name"] for c in body["candidates"]}
        assert "gpt4" in names and "gpt-4-1106-preview" not in names, body
        assert body["resolved"] == {"gpt4": "gpt-4-1106-preview"}
        assert set(body["chosen"]) <= {"gpt4", "Llama-2-7b-hf"}
        body = api.post("/v1/plan", json={"prompts": [{"id": "a", "quality": {"gpt4": 0.9, "Llama-2-7b-hf": 0.2}}],
                                          "min_avg_quality": 0.8}).json()
        assert body["assignments"][0]["model"] == "gpt4" and body["resolved"] == {"gpt4": "gpt-4-1106-preview"}
        assert body["model_names"].count("gpt4") == 1 and body["count_per_model"]["gpt4"] == 1
        r = api.post("/v1/select", json={"prompt": PROMPT, "models": ["gpt4"], "max_cost_usd": 0.0})
        assert r.status_code == 409 and "gpt4" in r.json()["blocking"] and "gpt-4-1106-preview" not in r.json()["blocking"]


def test_a_quality_without_evidence_does_not_meet_a_floor_unless_the_request_allows_it(api):
    body = {"prompt": PROMPT, "models": [UNTRAINED], "min_quality": 0.01}
    r = api.post("/v1/select", json=body)
    assert r.status_code == 409 and r.json()["blocking"][UNTRAINED] == ["low confidence"], r.text
    r = api.post("/v1/select", json={**body, "allow_low_confidence": True})
    assert r.status_code == 200 and r.json()["chosen"] == [UNTRAINED]
    candidate = next(c for c in r.json()["candidates"] if c["name"] == UNTRAINED)
    assert candidate["low_confidence"] and {"support", "evidence_rows"} <= set(candidate)
    plan = {"prompts": [{"id": "a", "prompt": PROMPT}], "models": [UNTRAINED], "min_quality": 0.01, "budget": 1.0}
    assert api.post("/v1/plan", json=plan).status_code == 409
    assert api.post("/v1/plan", json={**plan, "allow_low_confidence": True}).status_code == 200


def test_an_infeasible_select_says_so_in_one_sentence_with_the_way_out(api):
    """A 409 listed every model's reasons in `detail` (1,600 characters for 48 models) and no way out."""
    cases = [({"max_cost_usd": 1e-9}, "max_cost_usd"), ({"max_latency_ms": 1.0}, "max_latency_ms"),
             ({"min_quality": 0.9999, "exclude": [UNTRAINED]}, "min_quality"),
             ({"models": [UNTRAINED], "min_quality": 0.01}, "allow_low_confidence")]
    for constraints, field in cases:
        r = api.post("/v1/select", json={"prompt": PROMPT, **constraints})
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["blocking"] and field in body["way_out"], body
        assert len(body["detail"]) < 300 and body["detail"].count(". ") == 0 and "way out: " + field in body["detail"]
        assert not any(name in body["detail"] for name in body["blocking"])
        fixed = api.post("/v1/select", json={"prompt": PROMPT, **constraints, field: body["way_out"][field]})
        assert fixed.status_code == 200, (field, fixed.text)  # the way out alone makes it feasible
    r = api.post("/v1/select", json={"prompt": PROMPT, "max_cost_usd": 1e-9, "max_latency_ms": 1.0})
    assert r.status_code == 409 and r.json()["way_out"] == {} and "no single change" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/select", "/v1/plan", "/v1/predict", "/v1/plans"])
def test_a_client_hanging_up_mid_body_is_a_499_on_every_route(registry_dir, tiny_predictor, path):
    """FastAPI's body parsing answered a cut-short body with 400, while /v1/models said 499."""
    import asyncio

    from pickwise.api.http.app import create_app
    from pickwise.api.http.settings import ServiceSettings

    app = create_app(registry_dir, predictor=tiny_predictor, settings=ServiceSettings())
    messages = [{"type": "http.request", "body": b'{"prompt": "wh', "more_body": True}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def run():
        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", b"300")],
                 "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                 "root_path": ""}
        await app(scope, receive, send)
        metrics = []

        async def collect(message):
            metrics.append(message)

        get = {**scope, "method": "GET", "path": "/metrics", "raw_path": b"/metrics", "headers": []}
        await app(get, lambda: asyncio.sleep(0, {"type": "http.request", "body": b""}), collect)
        return b"".join(m.get("body", b"") for m in metrics).decode()

    text = asyncio.run(run())
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [499]
    assert sample_total(text, "pickwise_http_requests_total", endpoint=path, status="499") == 1


def test_unreadable_json_says_what_and_where(api):
    """A 5,000-digit integer or 100,000-deep nesting was a bare 400 "There was an error parsing the body"."""
    digits = "7" * 5000
    cases = [("/v1/select", '{"prompt": "x",\n "max_models": ' + digits + "}", "number too large", "line 2, column 16"),
             ("/v1/plan", '{"prompts": [], "budget": -' + digits + "}", "5,000 digits", "line 1, column 27"),
             ("/v1/select", '{"prompt": "x", "models": ' + "[" * 100_000 + "]" * 100_000 + "}",
              "JSON nested too deeply: 100,001 levels", "line 1, column 100026")]
    for path, body, what, where in cases:
        r = api.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and what in r.json()["detail"] and where in r.json()["detail"], r.text
    r = api.post("/v1/select", json={"prompt": digits})  # digits inside a string are text, not a number
    assert r.status_code == 200


def test_each_model_is_priced_by_its_predicted_answer_length(api, tiny_predictor, monkeypatch):
    """A cap that only the long-answer model breaks: its cost comes from its own predicted length."""
    def lengths(u, models, open_ended=None, snapshot=None, tasks=None, options=None):
        row = [4000.0 if m.name == "gpt-4-1106-preview" else 10.0 for m in models]
        return np.array([row] * len(u)), ["trained"] * len(models)

    monkeypatch.setattr(tiny_predictor, "output_tokens", lengths)
    body = api.post("/v1/select", json={"prompt": PROMPT, "objective": "max_quality"}).json()
    by_name = {c["name"]: c for c in body["candidates"]}
    assert by_name["gpt-4-1106-preview"]["output_tokens"] == 4000 and by_name["Llama-2-7b-hf"]["output_tokens"] == 10
    cap = by_name["gpt-4-1106-preview"]["cost_usd"] * 0.5
    assert all(c["cost_usd"] < cap for n, c in by_name.items() if n != "gpt-4-1106-preview")
    capped = api.post("/v1/select", json={"prompt": PROMPT, "objective": "max_quality", "max_cost_usd": cap}).json()
    excluded = {c["name"]: c["excluded_by"] for c in capped["candidates"]}
    assert "cost cap" in excluded["gpt-4-1106-preview"]
    assert not any("cost cap" in why for n, why in excluded.items() if n != "gpt-4-1106-preview")
    own = api.post("/v1/select", json={"prompt": PROMPT, "expected_output_tokens": 7}).json()
    assert {c["output_tokens"] for c in own["candidates"]} == {7}  # the request's own length overrides


def test_a_prompt_of_unknown_tokens_is_answered_as_unreadable(api):
    body = api.post("/v1/select", json={"prompt": "🎉🎉🎉"}).json()
    assert body["unreadable"] is True
    assert all(c["low_confidence"].startswith("unreadable prompt") for c in body["candidates"])
    assert api.post("/v1/select", json={"prompt": PROMPT}).json()["unreadable"] is False
    r = api.post("/v1/select", json={"prompt": "🎉🎉🎉", "min_quality": 0.01})
    assert r.status_code == 409 and "cannot read the prompt" in r.json()["detail"], r.text
    assert r.json()["unreadable"] is True
