"""Plan jobs shared by worker processes through their SQLite file, and their cancellation."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from pickwise.api.http.errors import HttpError
from pickwise.api.http.jobs import PlanJobs
from tests.api_support import PROMPT, TOKEN, client, empty_plan_response, plan_request
from tests.gateway_support import dead_url

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _gated(gate: threading.Event, started: threading.Event | None = None):
    def plan(request, stop=None):
        if started is not None:
            started.set()
        gate.wait(10)
        return empty_plan_response()
    return plan


def _until(jobs: PlanJobs, job_id: str, *states: str) -> str:
    deadline = time.monotonic() + 10
    while (status := jobs.get(job_id).status) not in states:
        assert time.monotonic() < deadline, status
        time.sleep(0.01)
    return status


def test_two_workers_share_jobs_their_bound_and_their_cancellation(tmp_path):
    """Two PlanJobs on one file stand for two worker processes (each its own connection and flock)."""
    path = tmp_path / "jobs.sqlite"
    gate, started = threading.Event(), threading.Event()
    a = PlanJobs(_gated(gate, started), path=path, queue_limit=3, keep=10, ttl_s=60)
    b = PlanJobs(_gated(gate), path=path, queue_limit=3, keep=10, ttl_s=60)
    running = a.submit(plan_request())
    queued = a.submit(plan_request())
    on_b = b.submit(plan_request())
    assert started.wait(5) and b.get(running.id).status == "running" and b.get(queued.id).status == "queued"
    with pytest.raises(HttpError) as exc:  # the bound counts both workers' jobs
        a.submit(plan_request())
    assert exc.value.status == 429 and "3 plan jobs" in exc.value.detail

    cancelled = b.cancel(queued.id)  # a queued job of the other worker: never runs
    assert cancelled.status == "cancelled" and cancelled.error.error == "cancelled"
    assert b.cancel(queued.id).status == "cancelled"  # again: as it is
    stopping = b.cancel(running.id)  # running: cancelled now, its answer discarded when it ends
    assert stopping.status == "cancelled" and "discarded" in stopping.error.detail
    extra = b.submit(plan_request())  # the cancelled queued job no longer counts...
    with pytest.raises(HttpError) as exc:  # ...the running one does, while it still computes
        b.submit(plan_request())
    assert exc.value.status == 429
    gate.set()
    assert _until(a, extra.id, "done") == _until(a, on_b.id, "done") == "done"
    deadline = time.monotonic() + 10
    while a._running is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    after = b.get(running.id)
    assert after.status == "cancelled" and after.result is None and after.started_at is not None
    assert a.get(queued.id).started_at is None  # never ran

    with pytest.raises(HttpError) as exc:  # a finished job cannot be cancelled
        a.cancel(on_b.id)
    assert exc.value.status == 409 and "already ended" in exc.value.detail
    with pytest.raises(HttpError) as exc:
        a.cancel("nope")
    assert exc.value.status == 404
    a.shutdown()
    b.shutdown()


def test_a_job_finishing_while_another_worker_reads_it_reads_whole(tmp_path, monkeypatch):
    # the reader saw the job running, then the owner finished it before the answer was read: the plan's
    # result was parsed as the error of a running job (seen once in a full test run)
    path = tmp_path / "jobs.sqlite"
    gate, started = threading.Event(), threading.Event()
    owner = PlanJobs(_gated(gate, started), path=path, queue_limit=2, keep=10, ttl_s=60)
    reader = PlanJobs(_gated(gate), path=path, queue_limit=2, keep=10, ttl_s=60)
    job = owner.submit(plan_request())
    assert started.wait(5)
    seen = reader._live_row

    def finished_after_the_look(db, job_id):
        row = seen(db, job_id)
        if row[1] == "running":
            gate.set()
            deadline = time.monotonic() + 10
            while db.execute("SELECT status FROM plan_jobs WHERE id = ?", (job_id,)).fetchone()[0] != "done":
                assert time.monotonic() < deadline
                time.sleep(0.01)
        return row

    monkeypatch.setattr(reader, "_live_row", finished_after_the_look)
    got = reader.get(job.id)
    assert got.status == "done" and got.result is not None and got.error is None
    owner.shutdown()
    reader.shutdown()


def test_reading_or_cancelling_before_any_job_is_a_404_and_makes_no_file(tmp_path):
    jobs = PlanJobs(_gated(threading.Event()), path=tmp_path / "jobs.sqlite", queue_limit=1, keep=1, ttl_s=60)
    for call in (jobs.get, jobs.get_json, jobs.cancel):
        with pytest.raises(HttpError) as exc:
            call("abc")
        assert exc.value.status == 404
    assert not (tmp_path / "jobs.sqlite").exists()


def test_shutdown_fails_its_queued_jobs_for_every_reader(tmp_path):
    path = tmp_path / "jobs.sqlite"
    gate = threading.Event()
    a = PlanJobs(_gated(gate), path=path, queue_limit=4, keep=10, ttl_s=60)
    reader = PlanJobs(_gated(gate), path=path, queue_limit=4, keep=10, ttl_s=60)
    first, second = a.submit(plan_request()), a.submit(plan_request())
    _until(reader, first.id, "running")
    a.shutdown()
    failed = reader.get(second.id)
    assert failed.status == "failed" and failed.error.error == "server_stopped"
    gate.set()  # the running plan finishes and is kept
    assert _until(reader, first.id, "done", "failed") == "done"


def test_a_job_whose_worker_died_reads_as_failed(tmp_path):
    """A worker killed mid-plan leaves its job 'running' in the file; its flock goes with it, so the
    next reader marks the job failed, saying why."""
    path = tmp_path / "jobs.sqlite"
    script = textwrap.dedent(f"""
        import sys, time
        from pickwise.api.http.jobs import PlanJobs
        from pickwise.api.schemas import PlanRequest
        def plan(request, stop):
            time.sleep(60)
        jobs = PlanJobs(plan, path={str(path)!r}, queue_limit=4, keep=10, ttl_s=60)
        print(jobs.submit(PlanRequest(prompts=[{{"id": "a", "prompt": "x"}}])).id, flush=True)
        time.sleep(60)
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        job_id = worker.stdout.readline().strip()
        reader = PlanJobs(_gated(threading.Event()), path=path, queue_limit=1, keep=10, ttl_s=60)
        assert _until(reader, job_id, "running") == "running"  # its worker lives: running it is
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    gone = reader.get(job_id)
    assert gone.status == "failed" and gone.error.error == "server_stopped"
    assert f"pid {worker.pid}" in gone.error.detail and "submit the plan again" in gone.error.detail
    assert not list((tmp_path / "jobs.sqlite-owners").iterdir())  # its lock file went with it
    gate = threading.Event()
    gate.set()
    again = PlanJobs(_gated(gate), path=path, queue_limit=1, keep=10, ttl_s=60).submit(plan_request())
    assert again.status in ("queued", "running", "done")  # the dead job no longer counts against the bound


def test_a_job_is_cancelled_over_http_by_whoever_holds_its_id(registry_dir, tiny_predictor, tmp_path):
    # submitting and reading a job need no token, so neither does cancelling the batch one sent by mistake
    with client(registry_dir, tiny_predictor, admin_token=None, job_store=str(tmp_path / "jobs.sqlite")) as api:
        prompts = [{"id": f"j{i}", "prompt": f"{PROMPT} {i}"} for i in range(3)]
        job = api.post("/v1/plans", json={"prompts": prompts, "budget": 1.0}).json()
        r = api.delete(f"/v1/plans/{job['id']}")
        assert r.status_code in (200, 409), r.text  # cancelled, or it had already finished
        if r.status_code == 200:
            assert r.json()["status"] == "cancelled" and r.json()["error"]["error"] == "cancelled"
            assert api.get(f"/v1/plans/{job['id']}").json()["status"] == "cancelled"
        assert api.delete("/v1/plans/unknown").status_code == 404


def test_serve_with_two_workers_answers_every_poll_alike(registry_dir, tiny_artifact, tmp_path):
    """`pickwise serve --workers 2`: each poll on a new connection lands on either worker, and every one
    finds the job (it lived only in the worker that accepted it: 200 or 404 at random)."""
    port = urlsplit(dead_url()).port
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKWISE_") or k == "PICKWISE_HOME"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PICKWISE_ADMIN_TOKEN=TOKEN,
               PICKWISE_JOB_STORE=str(tmp_path / "jobs.sqlite"), PICKWISE_SYNC_PLAN_LIMIT="2")
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "pickwise.api.cli.main", "serve", "--workers", "2", "--port", str(port),
         "--registry", str(registry_dir), "--artifact", str(tiny_artifact), "--store", str(tmp_path / "o.sqlite"),
         "--precision", "fp32", "--torch-threads", "1", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))

    def fresh(method: str, path: str, **kwargs) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=30) as c:  # a new connection each time
            return c.request(method, path, **kwargs)

    try:
        deadline = time.monotonic() + 120
        ready = 0
        while ready < 6:  # several answers in a row: both workers have built their apps
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            try:
                ready = ready + 1 if fresh("GET", "/healthz").status_code == 200 else 0
            except httpx.TransportError:
                time.sleep(0.3)
        # qualities given: no predictor needed (the tiny one loads only on its tiny backbone)
        prompts = [{"id": f"p{i}", "quality": {"gpt-4-1106-preview": 0.9, "Llama-2-7b-hf": 0.4 + i / 100},
                    "prompt_tokens": 100} for i in range(5)]
        r = fresh("POST", "/v1/plans", json={"prompts": prompts, "budget": 1.0})
        assert r.status_code == 202, r.text
        job_id, seen = r.json()["id"], []
        while not seen or seen[-1] not in ("done", "failed"):
            assert time.monotonic() < deadline
            r = fresh("GET", f"/v1/plans/{job_id}")
            assert r.status_code == 200, (seen, r.text)
            seen.append(r.json()["status"])
        for _ in range(6):  # done, whichever worker answers
            r = fresh("GET", f"/v1/plans/{job_id}")
            assert r.status_code == 200 and r.json()["status"] == "done", r.text
            assert [a["id"] for a in r.json()["result"]["assignments"]] == [p["id"] for p in prompts]
        r = fresh("DELETE", f"/v1/plans/{job_id}", headers=AUTH)
        assert r.status_code == 409 and r.json()["error"] == "conflict", r.text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert Path(tmp_path / "jobs.sqlite").is_file()


def test_a_running_job_cancelled_stops_at_its_next_check(tmp_path):
    """The plan asks `stop` between encoder chunks: a cancelled job stops there and frees its slot,
    rather than holding the bound of jobs until its whole batch is encoded."""
    from pickwise.api.errors import PlanCancelled

    stopped = threading.Event()

    def plan(request, stop):
        while not stop():
            time.sleep(0.01)
        stopped.set()
        raise PlanCancelled("cancelled between chunks")

    jobs = PlanJobs(plan, path=tmp_path / "jobs.sqlite", queue_limit=1, keep=10, ttl_s=60)
    job = jobs.submit(plan_request())
    _until(jobs, job.id, "running")
    assert jobs.cancel(job.id).status == "cancelled"
    assert stopped.wait(5)
    deadline = time.monotonic() + 5
    while True:  # the slot frees as soon as the plan has stopped
        try:
            second = jobs.submit(plan_request())
            break
        except HttpError as exc:
            assert exc.status == 429 and time.monotonic() < deadline
            time.sleep(0.02)
    assert jobs.get(job.id).status == "cancelled"
    jobs.cancel(second.id)  # it waits for its stop too: let its thread end
    jobs.shutdown()


def test_the_service_stops_encoding_a_plan_when_asked(registry_dir, tiny_predictor):
    from pickwise.api.errors import PlanCancelled
    from pickwise.api.service import PLAN_ENCODE_BATCH, PickwiseService
    from pickwise.registry import Registry

    service = PickwiseService(Registry(registry_dir), tiny_predictor)
    asked = []

    def stop():
        asked.append(1)
        return len(asked) > 1  # after the first chunk

    prompts = [f"prompt {i}" for i in range(3 * PLAN_ENCODE_BATCH)]
    with pytest.raises(PlanCancelled, match=f"after {PLAN_ENCODE_BATCH} of {len(prompts)} prompts"):
        service.encode(prompts, stop=stop)
    assert len(service.encode(prompts[:5], stop=lambda: False)) == 5



def test_workers_opening_a_new_jobs_file_together_all_get_in(tmp_path):
    # `serve --workers N` starts N processes that create the jobs file at once: one of them used to get
    # "database is locked" switching the new file to WAL (SQLite does not wait for that lock)
    from pickwise.api.http import job_store

    failures: list[BaseException] = []

    def open_it(path):
        try:
            job_store.connect(path).close()
        except BaseException as exc:  # noqa: BLE001 - collected, asserted below
            failures.append(exc)

    for trial in range(40):
        threads = [threading.Thread(target=open_it, args=(tmp_path / f"jobs{trial}.sqlite",)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[0]
