"""Helpers of the gateway tests: a registry whose models are served by a loopback upstream, and a
pickwise server (uvicorn, loopback) to point the official OpenAI SDK at."""
from __future__ import annotations

import contextlib
from pathlib import Path

import yaml

from bench.openai_upstream import serve
from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings
from tests.api_support import TOKEN, copy_models, new_model

UPSTREAM_KEY = "sk-upstream-SECRET-4242"
KEY_ENV = "PICKWISE_TEST_UPSTREAM_KEY"
# name: (USD per million input tokens, benchmark_score): min_cost ranks them cheap < down < mid < dear
SERVED = {"cheap": (0.1, 0.3), "down": (0.5, 0.5), "mid": (1.0, 0.6), "dear": (10.0, 0.9)}


def dead_url() -> str:
    """A loopback URL nothing listens on (a port just released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def served_registry(directory: Path, upstream_url: str, *, timeout_s: float = 1.0,
                    fields: dict[str, dict] | None = None) -> Path:
    """The API tests' models (no endpoint) plus SERVED, served by `upstream_url` ('down' by nothing);
    'cheap' is known upstream as 'provider-cheap'. `fields`: registry fields to set, by model."""
    copy_models(directory)
    entries = []
    dead = dead_url()
    for name, (price, score) in SERVED.items():
        endpoint = {"base_url": dead if name == "down" else upstream_url, "api_key_env": KEY_ENV,
                    "timeout_s": timeout_s}
        if name == "cheap":
            endpoint["model"] = "provider-cheap"
        entries.append(new_model(name, pricing={"input_per_million": price, "output_per_million": 2 * price},
                                 probe={"benchmark_score": score}, endpoint=endpoint, **(fields or {}).get(name, {})))
    (directory / "served.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))
    return directory


@contextlib.contextmanager
def pickwise_server(registry_dir: Path, predictor, **settings):
    """pickwise on 127.0.0.1 (uvicorn, a thread); yields its base URL."""
    settings.setdefault("admin_token", TOKEN)
    app = create_app(registry_dir, predictor=predictor, settings=ServiceSettings(**settings))
    with serve(app) as url:
        yield url
