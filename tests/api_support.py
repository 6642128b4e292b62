"""Helpers of the API tests: a small temp registry, an app on the tiny predictor, sample entries
(the fixtures built from them are in conftest.py)."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings
from pickwise.api.schemas import PlanRequest, PlanResponse
from pickwise.registry import default_registry_dir, load_registry
from pickwise.registry.store import specs_to_yaml

# The tiny artifact's three trained models, plus one it never saw (scored from a population prior).
TRAINED = ["gpt-4-1106-preview", "Llama-2-7b-hf", "gemini-1.5-flash-002"]
UNTRAINED = "claude-v2"
TOKEN = "s3cret-token"
PROMPT = "Write a Python function that returns the 10th Fibonacci number."


def copy_models(directory: Path, names=(*TRAINED, UNTRAINED)) -> Path:
    """A registry of a few shipped models (one file), so tests never touch the shipped one."""
    snapshot = load_registry(default_registry_dir())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "models.yaml").write_text(specs_to_yaml([snapshot.get(n) for n in names]))
    return directory


def new_model(name: str, **overrides) -> dict:
    """A valid model entry the registry does not have yet."""
    entry = {
        "name": name, "provider": "acme",
        "pricing": {"input_per_million": 0.01, "output_per_million": 0.02},
        "latency": {"ttft_ms": 100, "output_tokens_per_s": 200},
        "context_window": 32000, "max_output_tokens": 4000, "expected_output_tokens": 100,
        "probe": {"similar_to": "gpt-4-1106-preview"},
    }
    entry.update(overrides)
    return entry


class RecordingPredictor:
    """A real (tiny) predictor that notes which thread runs each encoder call, and on which prompts."""

    def __init__(self, predictor):
        self._predictor = predictor
        self.threads: set[str] = set()
        self.prompts: list[str] = []

    def prompt_features(self, prompts, **kwargs):
        self.threads.add(threading.current_thread().name)
        self.prompts.extend(prompts)
        return self._predictor.prompt_features(prompts, **kwargs)

    def __getattr__(self, name):
        return getattr(self._predictor, name)


@contextlib.contextmanager
def client(registry_dir: Path, predictor, **settings):
    """A TestClient (lifespan running) on an app over `registry_dir`; 5xx responses never raise here,
    so tests can assert on them."""
    settings.setdefault("admin_token", TOKEN)
    # each test's own jobs file: the session's $PICKWISE_HOME one would share the bound of 4 jobs across tests
    settings.setdefault("job_store", str(Path(registry_dir).parent / "jobs.sqlite"))
    app = create_app(registry_dir, predictor=predictor, settings=ServiceSettings(**settings))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def registry_with_alias(directory: Path, model: str, alias: str) -> Path:
    """The test models with `alias` added to `model`."""
    snapshot = load_registry(default_registry_dir())
    specs = [snapshot.get(n) for n in (*TRAINED, UNTRAINED)]
    specs = [s.model_copy(update={"aliases": [alias]}) if s.name == model else s for s in specs]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "models.yaml").write_text(specs_to_yaml(specs))
    return directory


@contextlib.contextmanager
def live_server(app, **options):
    """The app under a real uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def plan_request(n: int = 1) -> PlanRequest:
    """A plan request of `n` one-word prompts, for tests of the jobs around a plan rather than the plan."""
    return PlanRequest(prompts=[{"id": str(i), "prompt": "x"} for i in range(n)])


def empty_plan_response() -> PlanResponse:
    """A plan answer with nothing in it, for stand-in plan functions."""
    return PlanResponse(objective="max_quality", assignment=[], model_names=[], assignments=[], total_cost=0,
                        quality_sum=0, quality_mean=0, count_per_model={}, solver="test", bound=0, gap=0,
                        status="empty", seconds=0, registry_version="r", predictor_version="p")
