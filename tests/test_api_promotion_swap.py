"""A running service follows `artifact promote` / `rollback` without a restart (real uvicorn on
loopback, PICKWISE_HOME in a temp dir), and one request never mixes two predictors."""
from __future__ import annotations

import logging
import shutil
import time

import httpx
import pytest

from pickwise.api.http.app import create_app
from pickwise.api.http.promotions import PromotionWatcher
from pickwise.api.http.settings import ServiceSettings
from pickwise.api.service import PickwiseService
from pickwise.predictor.artifact import HEADS_FILE, artifact_version
from pickwise.predictor.promotion import POINTER_FILE, promote, rollback
from pickwise.registry import Registry, load_registry
from tests.api_support import PROMPT, UNTRAINED, RecordingPredictor, client, live_server
from tests.test_outcomes_fit import _better_candidate


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PICKWISE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(PromotionWatcher, "interval_s", 0.05)  # the test polls; a server looks once a second
    return tmp_path / "home"


def _fitted(predictor, bias: float = 2.0):
    """The predictor with UNTRAINED scored from a vector of its own (as `pickwise fit` would leave it)."""
    vector = predictor.trained_vectors[0].mean(0)
    return predictor.with_outcome_vectors({UNTRAINED: {"vector": vector.tolist(), "bias": bias, "rows": 500}})


def _quality(predictor, prompt: str, snapshot) -> float:
    """UNTRAINED's predicted quality on `prompt`."""
    f = predictor.prompt_features([prompt])
    vector = predictor.model_vector(snapshot.get(UNTRAINED), snapshot)
    return float(predictor.evidence(f.u, [vector], f.tasks, pooled=f.pooled).quality[0, 0])


def test_model_vectors_are_cached_per_predictor_not_only_per_registry_version(registry_dir, tiny_predictor):
    service = PickwiseService(Registry(registry_dir), tiny_predictor)
    snapshot = service.registry.snapshot
    assert service.scoring(snapshot).sources[UNTRAINED] == "population"
    fitted = _fitted(tiny_predictor)
    assert service.load_predictor(lambda: fitted) is None
    after = service.scoring(snapshot)  # same registry version, new predictor: its vectors, not the cached ones
    assert after.sources[UNTRAINED] == "outcomes" and after.predictor is fitted
    old = service.scoring(snapshot, tiny_predictor)  # a request still on the old predictor gets the old vectors
    assert old.sources[UNTRAINED] == "population"
    assert service.scoring(snapshot) is after  # ... and does not evict the serving predictor's


def test_a_request_decides_with_the_predictor_that_encoded_its_prompt(registry_dir, tiny_predictor):
    """A promotion that lands between a select's encoding and its decision must not mix the two."""
    new = RecordingPredictor(_fitted(tiny_predictor))
    new.version = "new-version"
    old = RecordingPredictor(tiny_predictor)
    old.version = "old-version"

    def encode_then_swap(prompts, **kwargs):
        features = tiny_predictor.prompt_features(prompts, **kwargs)
        if "swap" in prompts[0]:
            service._predictor = new  # what load_predictor's publish does, here at the worst moment
        return features

    old.prompt_features = encode_then_swap
    with client(registry_dir, old) as c:
        service = c.app.state.pickwise.service
        body = c.post("/v1/select", json={"prompt": "swap " + PROMPT}).json()
        assert body["predictor_version"] == "old-version"
        untrained = next(x for x in body["candidates"] if x["name"] == UNTRAINED)
        snapshot = service.registry.snapshot
        assert untrained["quality"] == pytest.approx(_quality(tiny_predictor, "swap " + PROMPT, snapshot), abs=1e-6)
        assert untrained["quality"] != pytest.approx(_quality(new, "swap " + PROMPT, snapshot), abs=1e-3)
        assert service.decisions.get(body["decision_id"]).encoder == tiny_predictor.encoder_version
        assert c.post("/v1/select", json={"prompt": PROMPT}).json()["predictor_version"] == "new-version"


def test_a_gateway_route_decides_with_the_predictor_that_encoded_its_prompt(registry_dir, tiny_predictor):
    from pickwise.api.gateway.route import GatewayOptions, decide_route
    from pickwise.api.schemas import SelectRequest
    from pickwise.api.service import Encoded

    old = RecordingPredictor(tiny_predictor)
    old.version = "old-version"
    new = RecordingPredictor(_fitted(tiny_predictor))
    new.version = "new-version"
    service = PickwiseService(Registry(registry_dir), old)
    snapshot = service.registry.snapshot
    encoded = Encoded(old.prompt_features([PROMPT]), old)
    assert service.load_predictor(lambda: new) is None  # a promotion lands before the decision
    request = SelectRequest.model_validate({**GatewayOptions().model_dump(exclude={"max_attempts"}), "prompt": PROMPT})
    decision, _ = decide_route(service, request, encoded, False, snapshot, 20)
    assert decision.predictor_version == "old-version"


def _wait_for(url: str, check, what: str, limit_s: float = 30.0) -> dict:
    """GET /readyz until `check(body)` holds (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + limit_s
    body = None
    while time.monotonic() < deadline:
        response = httpx.get(url + "/readyz", timeout=5)
        body = response.json()
        if response.status_code == 200 and check(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{what}: /readyz still says {body}")


def _selected_version(url: str) -> str:
    response = httpx.post(url + "/v1/select", json={"prompt": PROMPT}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["predictor_version"]


def test_a_running_server_follows_promotions_and_rollbacks(tmp_path, home, tiny_artifact, tiny_predictor,
                                                           registry_dir, caplog):
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    caplog.set_level(logging.INFO, logger="pickwise.api")
    base = promote(tiny_artifact, force=True)["version"]  # the tiny artifact stands for what serves now
    better = _better_candidate(tmp_path, tiny_predictor, load_registry(registry_dir))
    broken = tmp_path / "broken"
    shutil.copytree(better, broken)
    (broken / HEADS_FILE).write_bytes(b"not safetensors")
    candidate, broken_version = artifact_version(better), artifact_version(broken)

    app = create_app(registry_dir, settings=ServiceSettings(),
                     follow_promotions=lambda d: load_predictor(d, device="cpu", backbone=tiny_backbone()))
    with live_server(app) as url:
        _wait_for(url, lambda b: b["predictor_version"] == base, "the promoted artifact at start")
        assert _selected_version(url) == base

        promote(better)
        ready = _wait_for(url, lambda b: b["predictor_version"] == candidate, "after a promotion")
        assert ready["artifact_error"] is None and _selected_version(url) == candidate

        rollback()
        _wait_for(url, lambda b: b["predictor_version"] == base, "after a rollback")
        assert _selected_version(url) == base

        promote(broken)  # its figures are the good candidate's: promotion cannot tell, loading can
        ready = _wait_for(url, lambda b: b["artifact_error"] is not None, "after promoting a broken artifact")
        assert ready["predictor_version"] == base and broken_version in ready["artifact_error"]
        assert f"predictor {base} keeps serving" in ready["artifact_error"]
        assert _selected_version(url) == base
        assert any("promoted artifact not served" in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records)

        promote(better)  # a fixed pointer is picked up, and the error goes
        ready = _wait_for(url, lambda b: b["predictor_version"] == candidate, "after promoting a good one again")
        assert ready["artifact_error"] is None and _selected_version(url) == candidate
    ready_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pickwise ready")]
    assert sum(f"predictor {candidate}" in line for line in ready_lines) == 2  # one line per swap to it


def test_an_unreadable_pointer_keeps_the_predictor_serving(tmp_path, home, tiny_artifact, registry_dir):
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    base = promote(tiny_artifact, force=True)["version"]
    app = create_app(registry_dir, settings=ServiceSettings(),
                     follow_promotions=lambda d: load_predictor(d, device="cpu", backbone=tiny_backbone()))
    with live_server(app) as url:
        _wait_for(url, lambda b: b["predictor_version"] == base, "at start")
        pointer = home / POINTER_FILE
        good = pointer.read_text()
        pointer.write_text("{half a pointer")
        ready = _wait_for(url, lambda b: b["artifact_error"] is not None, "after breaking the pointer")
        assert POINTER_FILE in ready["artifact_error"] and ready["predictor_version"] == base
        pointer.write_text(good + "\n")  # back to the artifact that serves: nothing to load, the error goes
        _wait_for(url, lambda b: b["artifact_error"] is None, "after mending the pointer")


def test_an_artifact_given_explicitly_is_not_swapped(tmp_path, home, tiny_artifact, tiny_predictor, registry_dir):
    """`serve --artifact DIR` (here: the app given a predictor) watches nothing."""
    better = _better_candidate(tmp_path, tiny_predictor, load_registry(registry_dir))
    app = create_app(registry_dir, predictor=tiny_predictor, settings=ServiceSettings())
    assert app.state.pickwise.watcher is None
    with live_server(app) as url:
        promote(better)
        time.sleep(20 * PromotionWatcher.interval_s)
        ready = httpx.get(url + "/readyz").json()
        assert ready["predictor_version"] == tiny_predictor.version and ready["artifact_error"] is None


def test_serve_follows_promotions_only_without_artifact(registry_dir, tmp_path, monkeypatch):
    """`serve` without --artifact hands the app a loader to follow the pointer with (each worker too)."""
    import uvicorn

    from pickwise.api.cli import serving
    from pickwise.api.cli.main import main

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    monkeypatch.setattr(serving, "set_torch_threads", lambda *args: 1)
    assert main(["serve", "--registry", str(registry_dir)]) == 0
    assert main(["serve", "--registry", str(registry_dir), "--artifact", str(tmp_path)]) == 0
    assert apps[0].state.pickwise.watcher is not None and apps[1].state.pickwise.watcher is None

    for follow in (True, False):
        worker = serving.WorkerSettings(registry=registry_dir, artifact=tmp_path, follow_promotions=follow)
        for name, value in worker.environment().items():
            monkeypatch.setenv(name, value)
        assert (serving.app_from_env().state.pickwise.watcher is not None) is follow
