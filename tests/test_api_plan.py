"""Batch planning: inline POST /v1/plan and the POST /v1/plans job lifecycle."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from pickwise.api.http.errors import HttpError
from pickwise.api.http.jobs import PlanJobs
from tests.api_support import (
    PROMPT,
    TRAINED,
    UNTRAINED,
    RecordingPredictor,
    client,
    empty_plan_response,
    plan_request,
)

PROMPTS = [{"id": f"p{i}", "prompt": f"{PROMPT} Case {i}."} for i in range(6)]


@pytest.fixture
def api(registry_dir, tiny_predictor):
    with client(registry_dir, tiny_predictor, sync_plan_limit=10, job_plan_limit=50) as c:
        yield c


def _wait(api, job_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(f"/v1/plans/{job_id}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_plan_under_a_budget(api):
    cheap = api.post("/v1/plan", json={"prompts": PROMPTS, "budget": 0}).json()
    assert cheap["error"] == "plan_infeasible" and cheap["min_budget"] > 0
    budget = cheap["min_budget"] * 3
    r = api.post("/v1/plan", json={"prompts": PROMPTS, "budget": budget})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert [a["id"] for a in plan["assignments"]] == [p["id"] for p in PROMPTS]
    assert plan["total_cost"] <= budget + 1e-12
    assert plan["total_cost"] == pytest.approx(sum(a["cost_usd"] for a in plan["assignments"]))
    assert plan["quality_mean"] == pytest.approx(sum(a["quality"] for a in plan["assignments"]) / len(PROMPTS))
    assert sum(plan["count_per_model"].values()) == len(PROMPTS)
    assert plan["gap"] <= 1e-4 and plan["registry_version"] and plan["predictor_version"]
    # a larger budget can only buy more expected quality
    richer = api.post("/v1/plan", json={"prompts": PROMPTS, "budget": budget * 100}).json()
    assert richer["quality_sum"] >= plan["quality_sum"] - 1e-9


def test_plan_min_cost_for_a_quality_target_with_precomputed_qualities(api):
    prompts = [
        {"id": "own-1", "quality": {"gpt-4-1106-preview": 0.9, "Llama-2-7b-hf": 0.2}, "prompt_tokens": 100},
        {"id": "own-2", "quality": {"gpt-4-1106-preview": 0.9, "Llama-2-7b-hf": 0.8}, "prompt_tokens": 100},
    ]
    plan = api.post("/v1/plan", json={"prompts": prompts, "min_avg_quality": 0.85}).json()
    assert plan["objective"] == "min_cost"
    assert {a["id"]: a["model"] for a in plan["assignments"]} == {"own-1": "gpt-4-1106-preview", "own-2": "Llama-2-7b-hf"}
    assert plan["quality_mean"] == pytest.approx(0.85)
    r = api.post("/v1/plan", json={"prompts": prompts, "min_avg_quality": 0.95})
    assert r.status_code == 409 and r.json()["reason"] == "quality target"


def test_plan_constraints_and_their_errors(api):
    r = api.post("/v1/plan", json={"prompts": PROMPTS, "models": ["Llama-2-7b-hf"], "capacity": {"Llama-2-7b-hf": 2}})
    assert r.status_code == 409 and r.json()["reason"] == "capacity"
    r = api.post("/v1/plan", json={"prompts": PROMPTS, "capacity": {"Llama-2-7b-hf": 10**30}})  # was a 500
    assert r.status_code == 200, r.text
    r = api.post("/v1/plan", json={"prompts": PROMPTS, "exclude": [*TRAINED, UNTRAINED]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "models"]
    r = api.post("/v1/plan", json={"prompts": [{"id": "a", "quality": {"nope": 0.5}}]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "prompts", "0", "quality", "nope"]
    r = api.post("/v1/plan", json={"prompts": PROMPTS, "max_latency_ms": 1})
    assert r.status_code == 409 and r.json()["reason"] == "no allowed model"
    assert r.json()["prompt_ids"] == [p["id"] for p in PROMPTS]
    assert r.json()["detail"].endswith(": " + ", ".join(p["id"] for p in PROMPTS))  # ids, not positions
    r = api.post("/v1/plan", json={"prompts": [{"id": "a"}]})
    assert r.status_code == 422 and "prompt" in r.json()["detail"]
    r = api.post("/v1/plan", json={"prompts": [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "  "}]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "prompts", 1, "prompt"]
    r = api.post("/v1/plan", json={"prompts": [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]})
    assert r.status_code == 422 and "duplicate prompt id" in r.json()["detail"]
    r = api.post("/v1/plan", json={"prompts": [{"id": "a", "quality": {"Llama-2-7b-hf": 1.5}}]})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"][-1] == "Llama-2-7b-hf"
    assert api.post("/v1/plan", json={"prompts": []}).json()["status"] == "empty"
    # strict; no empty allow-list; a gap past 1 was refused by the solver, after every prompt was encoded
    for bad in ({"budget": True}, {"budget": "0.01"}, {"min_avg_quality": False}, {"models": []}, {"gap_tolerance": 5.0}):
        r = api.post("/v1/plan", json={"prompts": PROMPTS, **bad})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", *bad], r.text


def test_large_inline_plan_is_413_pointing_at_jobs(api):
    prompts = [{"id": str(i), "prompt": "hi"} for i in range(11)]
    r = api.post("/v1/plan", json={"prompts": prompts})
    assert r.status_code == 413 and "/v1/plans" in r.json()["detail"]
    r = api.post("/v1/plans", json={"prompts": [{"id": str(i), "prompt": "hi"} for i in range(51)]})
    assert r.status_code == 413


def test_plan_job_lifecycle(api):
    prompts = [{"id": f"j{i}", "prompt": f"{PROMPT} {i}"} for i in range(30)]  # above the inline limit
    r = api.post("/v1/plans", json={"prompts": prompts, "budget": 1.0})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done") and job["prompts"] == 30
    assert r.headers["Location"] == f"/v1/plans/{job['id']}"
    done = _wait(api, job["id"])
    assert done["status"] == "done" and done["error"] is None
    assert len(done["result"]["assignments"]) == 30 and done["result"]["total_cost"] <= 1.0
    assert done["finished_at"] >= done["started_at"] >= done["created_at"]
    assert done["expires_at"] > done["finished_at"]

    failed = _wait(api, api.post("/v1/plans", json={"prompts": prompts, "budget": 0}).json()["id"])
    assert failed["status"] == "failed" and failed["result"] is None
    assert failed["error"]["error"] == "plan_infeasible" and failed["error"]["min_budget"] > 0

    r = api.post("/v1/plans", json={"prompts": [{"id": "a", "quality": {"nope": 0.5}}]})  # 422 at once, no job
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "prompts", "0", "quality", "nope"]

    r = api.get("/v1/plans/does-not-exist")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = api.get("/v1/plans/" + "x" * 5000)
    assert r.status_code == 404 and len(r.json()["detail"]) < 200  # a long id is not echoed back whole


def test_jobs_queue_bound_eviction_and_expiry(tmp_path):
    """PlanJobs on its own, with a plan function that waits for a signal and a settable clock."""
    import threading

    gate, now = threading.Event(), [1000.0]

    def slow_plan(request, stop=None):
        gate.wait(10)
        return empty_plan_response()

    jobs = PlanJobs(slow_plan, path=tmp_path / "jobs.sqlite", queue_limit=2, keep=3, ttl_s=60, clock=lambda: now[0])
    first, second = jobs.submit(plan_request()), jobs.submit(plan_request())
    with pytest.raises(HttpError) as exc:
        jobs.submit(plan_request())
    assert exc.value.status == 429 and "limit 2" in exc.value.detail
    gate.set()
    deadline = time.monotonic() + 10
    while jobs.get(second.id).status != "done" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert jobs.get(first.id).status == "done"
    third, fourth = jobs.submit(plan_request()), None
    while jobs.get(third.id).status != "done" and time.monotonic() < deadline:
        time.sleep(0.01)
    fourth = jobs.submit(plan_request())  # 3 kept already: the oldest finished one goes
    with pytest.raises(HttpError) as exc:
        jobs.get(first.id)
    assert exc.value.status == 404
    while jobs.get(fourth.id).status != "done" and time.monotonic() < deadline:
        time.sleep(0.01)
    now[0] += 61  # past the TTL: every finished job is forgotten
    for job in (second, third, fourth):
        with pytest.raises(HttpError):
            jobs.get(job.id)
    jobs.shutdown()


def test_finished_jobs_keep_json_bytes_within_the_bound(tmp_path):
    """Each kept job held its plan as pydantic objects (~24 MB for a 20,000-prompt plan) with no bound
    on the total: now the answers' JSON is kept, at most max_bytes of it, oldest finished evicted first."""
    def plan(request, stop=None):
        ids = [p.id for p in request.prompts]
        return empty_plan_response().model_copy(update={"assignment": [0] * len(ids), "model_names": ["m"], "assignments": [
            {"id": i, "model": "m", "quality": 0.5, "cost_usd": 0.001, "latency_ms": 100.0} for i in ids]})

    one = len(plan(plan_request(200)).model_dump_json())
    jobs = PlanJobs(plan, path=tmp_path / "jobs.sqlite", queue_limit=1, keep=100, ttl_s=60, max_bytes=5 * one)
    ids = []
    for _ in range(30):
        ids.append(jobs.submit(plan_request(200)).id)
        deadline = time.monotonic() + 10
        while jobs.get(ids[-1]).status != "done" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert jobs.kept_bytes <= jobs.max_bytes
    assert jobs.kept_bytes == 5 * one  # the 5 newest, exactly
    for job_id in ids[:-5]:
        with pytest.raises(HttpError):
            jobs.get(job_id)
    kept = jobs.get(ids[-1])
    assert kept.status == "done" and len(kept.result.assignments) == 200
    assert json.loads(jobs.get_json(ids[-1])) == json.loads(kept.model_dump_json())
    big = jobs.submit(plan_request(2000))  # its answer alone exceeds the bound: the job fails, saying so
    deadline = time.monotonic() + 10
    while jobs.get(big.id).status not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.005)
    failed = jobs.get(big.id)
    assert failed.status == "failed" and failed.error.error == "payload_too_large" and jobs.kept_bytes <= jobs.max_bytes
    jobs.shutdown()


def test_plan_lists_truncated_text_prompts_and_prices_quality_only_rows_by_prompt_tokens(api):
    long_prompt = " ".join(["Explain the proof step by step."] * 40)  # far past the tiny predictor's 32 tokens
    prompts = [
        {"id": "own", "quality": {"gpt-4-1106-preview": 0.9}, "prompt_tokens": 1000},
        {"id": "short", "prompt": "Hi."},
        {"id": "long", "prompt": long_prompt},
    ]
    r = api.post("/v1/plan", json={"prompts": prompts, "budget": 10.0})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["truncated"] == ["long"]
    by_id = {a["id"]: a for a in plan["assignments"]}
    assert by_id["own"]["model"] == "gpt-4-1106-preview" and by_id["own"]["quality"] == pytest.approx(0.9)
    assert by_id["own"]["cost_usd"] > 0  # 1000 prompt tokens priced although there is no text


def test_selects_plans_and_plan_jobs_all_encode_on_the_one_encoder_thread(registry_dir, tiny_predictor):
    """A second thread running torch slows every encoder call (libgomp throttling): one thread does it all."""
    recording = RecordingPredictor(tiny_predictor)
    with client(registry_dir, recording, sync_plan_limit=10, job_plan_limit=50) as api:
        assert api.post("/v1/select", json={"prompt": PROMPT}).status_code == 200
        assert api.post("/v1/plan", json={"prompts": PROMPTS, "budget": 1.0}).status_code == 200
        job = api.post("/v1/plans", json={"prompts": PROMPTS, "budget": 1.0}).json()
        assert _wait(api, job["id"])["status"] == "done"
        assert api.post("/v1/select", json={"prompt": PROMPT + " Again."}).status_code == 200
    assert len(recording.threads) == 1 and recording.threads.pop().startswith("pickwise-encode")


def test_plan_encoding_in_chunks_keeps_every_prompt_in_its_place(registry_dir, tiny_predictor):
    from pickwise.api.service import PLAN_ENCODE_BATCH, PickwiseService
    from pickwise.registry import Registry

    service = PickwiseService(Registry(registry_dir), tiny_predictor)
    prompts = [f"{PROMPT} " + "and more " * (i % 37) + f"#{i}" for i in range(2 * PLAN_ENCODE_BATCH + 22)]
    features = service.encode(prompts)
    expected = tiny_predictor.prompt_features(prompts)
    np.testing.assert_allclose(features.u, expected.u, atol=1e-5)
    np.testing.assert_allclose(features.tasks, expected.tasks, atol=1e-5)
    assert features.truncated == list(expected.truncated) and any(features.truncated) and not all(features.truncated)
    assert len(service.encode([])) == 0


def test_a_lone_surrogate_in_a_request_is_a_422_not_a_500(api):
    """JSON allows "\\ud800"; quoting it back in an error could not be encoded as UTF-8 (a 500)."""
    for body in ({"prompts": [{"id": "a", "quality": {"\ud800": 0.5}, "prompt_tokens": 3}], "budget": 1},
                 {"prompts": [{"id": "a", "prompt": "x"}], "capacity": {"\ud800": 3}}):
        for route in ("/v1/plan", "/v1/plans"):
            r = api.post(route, content=json.dumps(body), headers={"Content-Type": "application/json"})
            assert r.status_code == 422, (route, r.text)


def test_a_plan_whose_floor_no_evidence_meets_names_low_confidence(api):
    """Every quality on a prompt the encoder cannot read is low-confidence; under a floor, the 409 says so and
    names the switch that lets such qualities count, as select's does."""
    prompts = [{"id": f"e{i}", "prompt": "🎉" * (i + 1)} for i in range(3)]
    r = api.post("/v1/plan", json={"prompts": prompts, "min_quality": 0.01, "budget": 1.0})
    assert r.status_code == 409 and r.json()["reason"] == "no allowed model", r.text
    body = r.json()
    assert body["prompt_ids"] == ["e0", "e1", "e2"] and body["way_out"] == {"allow_low_confidence": True}
    assert "3 of them for low confidence" in body["detail"] and "--allow-low-confidence" in body["detail"], body
    ok = api.post("/v1/plan", json={"prompts": prompts, "min_quality": 0.01, "budget": 1.0, "allow_low_confidence": True})
    assert ok.status_code == 200, ok.text
    r = api.post("/v1/plan", json={"prompts": prompts, "min_quality": 0.01, "budget": 1.0, "max_latency_ms": 1})
    assert r.status_code == 409 and "low confidence" not in r.json()["detail"] and "way_out" not in r.json()
