"""The FastAPI app factory: one registry, one predictor, one micro-batcher per app.

    create_app(registry_dir, artifact_dir)        # loads the predictor in the background
    create_app(registry_dir, predictor=loaded)    # tests: an already-loaded predictor
    create_app(registry_dir, predictor=loader)    # or any zero-argument callable returning one
    create_app(registry_dir, follow_promotions=load)  # whatever `artifact promote` names, load(dir) loads

The predictor loads in a background thread started by the lifespan, so /healthz answers at
once and /readyz (and every route that needs the predictor) says 503 until it is loaded. With
`follow_promotions` the app serves the promoted artifact and swaps in the next one when the
pointer moves (api/http/promotions.py).
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from pickwise.api.gateway import Forwarder, UpstreamClient
from pickwise.api.http import gateway
from pickwise.api.http.batcher import MicroBatcher
from pickwise.api.http.encoding import NoContentEncoding
from pickwise.api.http.errors import install_error_handlers
from pickwise.api.http.job_store import default_jobs_path
from pickwise.api.http.jobs import PlanJobs
from pickwise.api.http.limits import BodySizeLimit
from pickwise.api.http.methods import HeadAsGet
from pickwise.api.http.promotions import PromotionWatcher
from pickwise.api.http.routes import AppState, health, models, outcomes, selection
from pickwise.api.http.settings import ADMIN_TOKEN_ENV, ServiceSettings
from pickwise.api.http.telemetry import MetricsMiddleware, ServiceMetrics
from pickwise.api.http.timeouts import BodyReadTimeout
from pickwise.api.schemas import MAX_PROMPT_CHARS
from pickwise.api.service import PickwiseService
from pickwise.registry import Registry, default_registry_dir, user_registry_dir
from pickwise.registry.decisions import DecisionStore

DESCRIPTION = f"""
Pick the cheapest LLM (or parallel set of LLMs) that answers a prompt well.

* `POST /v1/select` routes one prompt; an infeasible request is **409** naming, per model,
  the constraints that block it.
* `POST /v1/plan` plans a batch inline (up to a configured size, 1,000 by default; more is
  **413**), `POST /v1/plans` runs a larger one as a job polled at `GET /v1/plans/{{id}}`.
* `GET /v1/models` is open; `POST`/`DELETE /v1/models` need `Authorization: Bearer <token>`
  with the token in `{ADMIN_TOKEN_ENV}` (writes are disabled when it is unset).
* `/openai/v1` is an OpenAI-compatible gateway: point an OpenAI SDK's `base_url` at it and use
  model `pickwise/auto` (routed, with fallback) or a registered model's name (forwarded).

Limits: prompts up to {MAX_PROMPT_CHARS:,} characters (422 on `prompt` above), request bodies
up to 8 MiB by default (413). Every error is JSON `{{"error": code, "detail": message}}`.
"""


def log_config(level: str = "info") -> dict:
    """uvicorn's logging config plus the `pickwise` loggers on its handler, at `level`: without it
    their INFO lines (the ready line, registry reloads) go nowhere under `pickwise serve`."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["pickwise"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def _loader(predictor, artifact_dir) -> Callable[[], object] | None:
    """None when `predictor` is already loaded; else a zero-argument function that loads it."""
    if predictor is not None and hasattr(predictor, "prompt_features"):
        return None
    if callable(predictor):
        return predictor

    def load():
        from pickwise.predictor.inference import load_predictor

        return load_predictor(artifact_dir)

    return load


def create_app(
    registry_dir: str | Path | None = None,
    artifact_dir: str | Path | None = None,
    *,
    predictor=None,
    settings: ServiceSettings | None = None,
    follow_promotions: Callable[[Path], object] | None = None,
) -> FastAPI:
    """Build the app; raises RegistryError when the registry directory is invalid.

    `follow_promotions(directory)` loads an artifact: given, the app serves the artifact the promotion
    pointer names, and follows the pointer (`artifact_dir` and `predictor` are then not used)."""
    settings = settings or ServiceSettings()
    registry = Registry(registry_dir) if registry_dir is not None else \
        Registry(user_registry_dir(), base=default_registry_dir())
    loader = None if follow_promotions is not None else _loader(predictor, artifact_dir)
    decisions = DecisionStore(settings.outcome_store, keep_s=settings.decision_keep_s, max_rows=settings.decision_max,
                              keep_prompt=settings.decision_keep_prompt)
    service = PickwiseService(registry, predictor if loader is None and follow_promotions is None else None,
                              outcome_store=settings.outcome_store, decisions=decisions)
    watcher = PromotionWatcher(service, follow_promotions) if follow_promotions is not None else None
    metrics = ServiceMetrics()
    def lanes() -> int:  # read when the batcher starts, after the predictor has loaded
        supported = service.predictor.parallel_lanes
        return min(settings.encoder_lanes, supported) if settings.encoder_lanes else supported

    def encode(prompts, single_thread):  # the batcher hands each prompt its row: features and their predictor
        batch = service.encode_batch(prompts, batch_size=settings.max_batch, single_thread=single_thread)
        return batch, batch.features.truncated

    batcher = MicroBatcher(
        encode,
        max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
        observe=metrics.observe_batch, executor=service.encoder, lanes=lanes,
    )
    forwarder = Forwarder(None, observer=metrics)  # its pooled client opens with the app (lifespan)
    jobs = PlanJobs(service.plan, path=settings.job_store or default_jobs_path(settings.outcome_store),
                    queue_limit=settings.job_queue_limit, keep=settings.job_keep,
                    ttl_s=settings.job_ttl_s, max_bytes=settings.job_keep_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        forwarder.client = UpstreamClient(max_connections=settings.upstream_max_connections)
        if watcher is not None:
            watcher.start()  # loads what the pointer names, then follows it
        elif loader is not None and not service.ready and service.load_error is None:
            threading.Thread(target=service.load_predictor, args=(loader,), name="pickwise-load-predictor",
                             daemon=True).start()
        elif service.ready:
            service.scoring(registry.snapshot)  # model vectors ready before the first request
            service.log_ready(registry.snapshot)
        yield
        if watcher is not None:
            watcher.stop()
        await batcher.aclose()
        await forwarder.client.aclose()
        await run_in_threadpool(jobs.shutdown)
        await run_in_threadpool(decisions.close)  # what is queued is written before the process goes

    # Swagger UI and ReDoc from assets shipped in fastapi-offline: no page loads anything from another host
    app = FastAPIOffline(title="pickwise", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.pickwise = AppState(service=service, batcher=batcher, metrics=metrics, jobs=jobs, settings=settings,
                                  forwarder=forwarder, watcher=watcher)
    install_error_handlers(app)
    for module in (selection, outcomes, models, health, gateway):
        app.include_router(module.router)
    app.add_middleware(HeadAsGet)  # innermost: the metrics count a HEAD as HEAD
    app.add_middleware(NoContentEncoding)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(BodyReadTimeout, seconds=settings.body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)  # outermost: sees 413s too
    return app
