"""Liveness, readiness and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response

from pickwise.api.http.routes import state
from pickwise.api.schemas import ErrorBody, Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="the process is alive")
async def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Ready, summary="the predictor is loaded (503 until then)",
            responses={503: {"model": ErrorBody, "description": "predictor loading, or failed to load"}})
async def readyz(request: Request) -> Ready:
    st = state(request)
    service = st.service
    predictor = service.predictor  # NotReady (503) while loading
    snapshot = service.registry.latest()  # never waits for a reload or a write on the event loop
    return Ready(predictor_version=predictor.version, predictor_precision=predictor.precision,
                 registry_version=snapshot.version, models=len(snapshot), registry_error=service.registry.reload_error,
                 artifact_error=st.watcher.error if st.watcher is not None else None)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(request: Request) -> Response:
    body, content_type = state(request).metrics.render()
    return Response(body, media_type=content_type)
