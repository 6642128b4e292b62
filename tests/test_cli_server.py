"""`pickwise select|predict|plan --server URL`: the same output as the local path, from a running service."""
from __future__ import annotations

import json
import re
import socket
import threading

import httpx
import pytest

from pickwise.api.cli.main import main
from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings
from pickwise.predictor import inference as predictor_inference
from tests.api_support import PROMPT, TRAINED, UNTRAINED, copy_models, live_server


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_predictor):
    """(registry dir, URL) of a service on the tiny predictor, inline plans up to 3 prompts."""
    registry = copy_models(tmp_path_factory.mktemp("served") / "registry")
    app = create_app(registry, predictor=tiny_predictor, settings=ServiceSettings(sync_plan_limit=3))
    with live_server(app) as url:
        yield registry, url


@pytest.fixture
def loads(monkeypatch, tiny_predictor):
    """The local path loads the tiny predictor instead of the shipped artifact; counts the loads."""
    calls = []

    def load(artifact=None, **kwargs):
        calls.append(artifact)
        return tiny_predictor

    monkeypatch.setattr(predictor_inference, "load_predictor", load)
    return calls


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_select_through_the_server_prints_what_the_local_path_prints(served, loads, capsys, monkeypatch):
    registry, url = served
    cases = ([], ["--json"], ["--max-models", "2", "--objective", "max_quality", "--json"],
             ["--models", UNTRAINED, "--min-quality", "0.01"],  # infeasible: exit 1, same message
             ["--models", UNTRAINED, "--min-quality", "0.01", "--json"])
    for extra in cases:
        local = _run(capsys, "select", PROMPT, "--registry", str(registry), *extra)
        before = len(loads)
        remote = _run(capsys, "select", PROMPT, "--server", url, *extra)
        assert len(loads) == before  # the server answered; nothing was loaded here
        if "--json" in extra and remote[0] == 0:  # only a server keeps decisions for feedback by id
            assert json.loads(local[1])["decision_id"] is None
            assert len(json.loads(remote[1])["decision_id"]) == 32
            remote = (remote[0], re.sub(r'"decision_id": "[0-9a-f]+"', '"decision_id": null', remote[1]), remote[2])
        assert remote == local, extra
    assert local[0] == 1
    monkeypatch.setenv("PICKWISE_SERVER", url)  # the default for --server
    before = len(loads)
    assert _run(capsys, "select", PROMPT)[0] == 0 and len(loads) == before


def test_predict_through_the_server_writes_the_local_lines(served, loads, capsys, tmp_path):
    registry, url = served
    prompts = tmp_path / "prompts.jsonl"
    long = " ".join(["word"] * 400)  # read head + tail only: "truncated"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": p}) + "\n"
                               for i, p in enumerate([PROMPT, "What is 2+2?", long, "hello"])))
    for extra in ([], ["--models", f"{TRAINED[0]},{UNTRAINED}"]):
        local = _run(capsys, "predict", "--input", str(prompts), "--registry", str(registry), "--no-progress", *extra)
        remote = _run(capsys, "predict", "--input", str(prompts), "--server", url, *extra)
        assert remote == local and local[0] == 0
        lines = [json.loads(line) for line in remote[1].splitlines()]
        assert [line["id"] for line in lines] == ["q0", "q1", "q2", "q3"] and lines[2]["truncated"] is True
    assert any("low_confidence" in line for line in lines)


def test_predict_estimates_through_the_server_is_refused_not_dropped(served, loads, capsys, tmp_path):
    """POST /v1/predict answers qualities only: `--estimates` would silently lose its fields."""
    _, url = served
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "q0", "prompt": PROMPT}) + "\n")
    code, out, err = _run(capsys, "predict", "--input", str(prompts), "--server", url, "--estimates")
    assert code == 2 and out == ""
    assert "--estimates" in err and "--server ''" in err


def test_plan_through_the_server_inline_and_as_a_job(served, loads, capsys, tmp_path):
    registry, url = served
    for n in (2, 5):  # the server plans 3 prompts inline: 5 go to POST /v1/plans
        prompts = tmp_path / f"prompts{n}.jsonl"
        prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"{PROMPT} #{i}"}) + "\n" for i in range(n)))
        # feasible; then a budget below the minimum; then with the model-list options
        for extra in (["--budget", "1"], ["--budget", "0"],
                      ["--budget", "1", "--exclude", TRAINED[0], "--capacity", f"{TRAINED[1]}=1"]):
            local = _run(capsys, "plan", "--input", str(prompts), "--registry", str(registry), "--quiet", *extra)
            remote = _run(capsys, "plan", "--input", str(prompts), "--server", url, "--quiet", *extra)
            assert remote[:2] == local[:2], (n, extra)
            if local[0] == 0:
                assert len(remote[1].splitlines()) == n
                if "--exclude" in extra:
                    used = [json.loads(line)["model"] for line in remote[1].splitlines()]
                    assert TRAINED[0] not in used and used.count(TRAINED[1]) <= 1, used
            else:
                assert url in remote[2] and "minimum feasible budget" in remote[2]
                assert local[2].splitlines()[-1] == remote[2].splitlines()[-1]


def test_a_server_that_is_down_or_refuses_is_a_clear_error_naming_it(served, loads, capsys):
    _, url = served
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, _, err = _run(capsys, "select", PROMPT, "--server", down)
    assert code == 2 and f"cannot reach the pickwise server at {down}" in err
    code, _, err = _run(capsys, "select", PROMPT, "--server", url, "--models", "nope")
    assert code == 2 and url in err and "HTTP 422" in err and "nope" in err
    assert not loads


def test_a_field_the_server_refuses_is_named_as_the_option_like_the_local_path(served, loads, capsys, tmp_path):
    """An unknown model in --models is `--models: unknown model(s) ...` locally; through the server the
    same error named the request field (`models: ...`), which is no option the user typed."""
    registry, url = served
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "q0", "prompt": PROMPT}) + "\n")
    cases = [("select", PROMPT, "--models", "gpt-4-1106-previe"), ("select", PROMPT, "--exclude", "nope"),
             ("predict", "--input", str(prompts), "--models", "nope"),
             ("plan", "--input", str(prompts), "--capacity", "nope=1", "--quiet")]
    for argv in cases:
        option = argv[-2] if argv[-1] != "--quiet" else argv[-3]
        local = _run(capsys, *argv, "--registry", str(registry))
        remote = _run(capsys, *argv, "--server", url)
        assert local[0] == remote[0] == 2, (argv, local, remote)
        assert f"error: {option}: unknown model" in local[2], local[2]
        assert f"answered HTTP 422: {option}: unknown model" in remote[2] and url in remote[2], remote[2]


def test_an_allow_list_all_denied_is_the_same_usage_error_locally_and_through_the_server(served, loads, capsys):
    registry, url = served
    argv = ("select", PROMPT, "--models", TRAINED[0], "--exclude", TRAINED[0])
    local = _run(capsys, *argv, "--registry", str(registry))
    remote = _run(capsys, *argv, "--server", url)
    assert local[0] == remote[0] == 2, (local, remote)
    assert "error: --exclude: " in local[2] and "answered HTTP 422: --exclude: " in remote[2], (local, remote)


def test_a_server_still_loading_its_predictor_is_waited_for_not_an_error(tiny_predictor, tmp_path, loads, capsys,
                                                                         monkeypatch):
    """Right after `pickwise serve` starts, /v1/select is 503 not_ready (Retry-After) while the predictor
    loads; `select --server` failed there (exit 2) where the local path just loads and answers. It now
    waits for a server that says it is loading (not one whose load failed), saying so once."""
    from pickwise.api.cli import remote

    release = threading.Event()

    def slow_load():
        release.wait(30)
        return tiny_predictor

    registry = copy_models(tmp_path / "registry")
    app = create_app(registry, predictor=slow_load, settings=ServiceSettings(job_store=str(tmp_path / "jobs.sqlite")))
    waits = []

    def wait(seconds):  # the first wait lets the load finish; no test time spent sleeping
        waits.append(seconds)
        release.set()
        threading.Event().wait(0.05)

    monkeypatch.setattr(remote, "_wait", wait)
    with live_server(app) as url:
        code, out, err = _run(capsys, "select", PROMPT, "--server", url, "--json")
    assert code == 0 and json.loads(out)["chosen"], (code, err)
    assert waits and err.count("still loading") == 1, err
    assert not loads


def test_a_server_whose_predictor_failed_to_load_is_an_error_at_once(tmp_path, loads, capsys, monkeypatch):
    from pickwise.api.cli import remote

    def broken():
        raise OSError("no artifact here")

    registry = copy_models(tmp_path / "registry")
    app = create_app(registry, predictor=broken, settings=ServiceSettings(job_store=str(tmp_path / "jobs.sqlite")))
    monkeypatch.setattr(remote, "_wait", lambda seconds: (_ for _ in ()).throw(AssertionError("waited")))
    with live_server(app) as url:
        while httpx.get(f"{url}/readyz").json().get("detail", "").endswith("still loading"):
            threading.Event().wait(0.02)  # the load fails in the background: wait until it has
        code, _, err = _run(capsys, "select", PROMPT, "--server", url)
    assert code == 2 and "failed to load" in err and "no artifact here" in err, err


def test_ctrl_c_while_a_plan_job_runs_cancels_the_job(served, loads, capsys, tmp_path, monkeypatch):
    """Ctrl-C while `plan` polled its job left the job queued or running on the server, holding one
    of the few places for jobs (4 by default) until it ended; the CLI now cancels it, and says so."""
    import httpx

    from pickwise.api.cli import remote

    _, url = served
    prompts = tmp_path / "prompts.jsonl"  # over the server's inline limit of 3: a job
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"{PROMPT} #{i}"}) + "\n" for i in range(5)))

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(remote.time, "sleep", interrupted)
    code, out, err = _run(capsys, "plan", "--input", str(prompts), "--budget", "1", "--server", url)
    assert code == 130 and out == ""
    job_id = re.search(r"plan job ([0-9a-f]{32})", err).group(1)
    job = httpx.get(f"{url}/v1/plans/{job_id}").json()
    if job["status"] == "cancelled":  # else the tiny predictor's plan had already ended
        assert f"cancelled plan job {job_id} on the pickwise server at {url}" in err
    else:
        assert job["status"] == "done" and f"plan job {job_id} had already finished" in err


@pytest.mark.parametrize("more", [0, 3], ids=["inline", "job"])
def test_a_line_the_server_refuses_is_named_by_its_file_and_line(served, loads, capsys, tmp_path, more):
    """With --server the CLI cannot check model names in a line's "quality" (the server's registry is
    not here); the server's 422 said `prompts.1.quality.nope`, counting prompts from 0 and skipping
    blank lines, so the user looked for the wrong line. It now reads as the local path's `file:line`."""
    registry, url = served
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": PROMPT}) + "\n\n"
                       + json.dumps({"id": "b", "prompt": PROMPT, "quality": {"nope": 0.5}}) + "\n"
                       + "".join(json.dumps({"id": f"c{i}", "prompt": PROMPT}) + "\n" for i in range(more)))
    local = _run(capsys, "plan", "--input", str(prompts), "--registry", str(registry), "--budget", "1")
    remote = _run(capsys, "plan", "--input", str(prompts), "--server", url, "--budget", "1")
    assert local[0] == remote[0] == 2
    assert f"{prompts}:3: unknown model 'nope'" in local[2]
    assert url in remote[2] and f"{prompts}:3: " in remote[2] and "unknown model 'nope'" in remote[2], remote[2]


def test_a_job_cancelled_elsewhere_is_told_as_such_not_as_an_http_400(served, loads, capsys, tmp_path, monkeypatch):
    """A job that ended cancelled (or failed with server_stopped) read 'answered HTTP 400: ...', a
    status the server never sent; it now says the job ended so."""
    import httpx

    from pickwise.api.cli import remote

    _, url = served
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"{PROMPT} #{i}"}) + "\n" for i in range(5)))
    cancelled = []
    wait = remote.Server.wait_for_job

    def cancelled_first(self, job):
        cancelled.append(httpx.delete(f"{url}/v1/plans/{job['id']}").status_code == 200)
        return wait(self, job)

    monkeypatch.setattr(remote.Server, "wait_for_job", cancelled_first)
    code, _, err = _run(capsys, "plan", "--input", str(prompts), "--budget", "1", "--server", url, "--quiet")
    if cancelled[0]:  # else the tiny predictor's plan had already ended
        assert code == 2 and "HTTP 400" not in err, err
        assert re.search(rf"plan job [0-9a-f]{{32}} on the pickwise server at {url} ended cancelled: cancelled at", err)
    else:
        assert code == 0
