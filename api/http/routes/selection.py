"""Per-request selection and batch planning (inline, or as a background job)."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from pickwise.api.http.batcher import QueueFull
from pickwise.api.http.errors import HttpError
from pickwise.api.http.routes import BodyErrorRoute, state, unless_disconnected
from pickwise.api.http.routes import json_response as _json
from pickwise.api.schemas import (
    ErrorBody,
    InfeasibleBody,
    PlanInfeasibleBody,
    PlanJob,
    PlanRequest,
    PlanResponse,
    PredictRequest,
    PredictResponse,
    SelectRequest,
    SelectResponse,
    ValidationErrorBody,
)

router = APIRouter(prefix="/v1", tags=["selection"], route_class=BodyErrorRoute)

COMMON = {
    400: {"model": ErrorBody, "description": "body is not UTF-8 JSON text"},
    413: {"model": ErrorBody, "description": "body or batch too large"},
    422: {"model": ValidationErrorBody, "description": "invalid request; `errors` names each field"},
    503: {"model": ErrorBody, "description": "the predictor is not loaded yet"},
}


@router.post("/select", response_model=SelectResponse, summary="choose the model (or set) for one prompt",
             responses={**COMMON, 409: {"model": InfeasibleBody, "description": "no model meets the constraints"},
                        429: {"model": ErrorBody, "description": "overloaded: the predictor's queue is full; "
                                                                "retry after the Retry-After seconds"}})
async def select(body: SelectRequest, request: Request) -> Response:
    st = state(request)
    service = st.service
    service.check_ready()  # 503 before queueing when not ready
    snapshot = service.registry.latest()  # never waits for a reload or a write on the event loop
    service.check_lists(body, snapshot)  # a request that contradicts itself costs no encoder time
    try:
        encoded, truncated = await unless_disconnected(request, st.batcher.submit(body.prompt))
    except QueueFull as exc:
        raise HttpError(429, "overloaded", f"{exc}; retry shortly", headers={"Retry-After": "1"},
                           waiting=exc.waiting, max_queue=exc.limit) from None
    # decided by the predictor that encoded the prompt, even if a promotion swapped in another since
    result = await run_in_threadpool(service.decide, body, encoded.features, truncated, snapshot,
                                     predictor=encoded.predictor)
    result.decision_id = service.record_decision(body.prompt, result, encoded)
    st.metrics.count_selection(result.chosen)
    return _json(result)


def _check_size(request: PlanRequest | PredictRequest, limit: int, hint: str, **extra) -> None:
    if len(request.prompts) > limit:
        raise HttpError(413, "payload_too_large", f"{len(request.prompts):,} prompts exceed the limit of {limit:,}{hint}",
                        limit=limit, **extra)


@router.post("/plan", response_model=PlanResponse, summary="assign a model to each prompt of a batch (inline)",
             responses={**COMMON, 409: {"model": PlanInfeasibleBody, "description": "no assignment meets the constraints"}})
async def plan(body: PlanRequest, request: Request) -> Response:
    st = state(request)
    limit = st.settings.sync_plan_limit
    _check_size(body, limit, f" for an inline plan; submit larger batches to POST /v1/plans "
                             f"(up to {st.settings.job_plan_limit:,} prompts)", jobs="/v1/plans")
    return _json(await unless_disconnected(request, run_in_threadpool(st.service.plan, body)))


@router.post("/predict", response_model=PredictResponse, response_model_exclude_none=True,
             summary="every prompt's quality per model, as `pickwise predict` lines",
             responses={**COMMON, 413: {"model": ErrorBody, "description": "more prompts than an inline plan takes"}})
async def predict(body: PredictRequest, request: Request) -> Response:
    st = state(request)
    st.service.check_ready()
    _check_size(body, st.settings.sync_plan_limit, "; send them in several requests")
    result = await unless_disconnected(request, run_in_threadpool(st.service.predict, body))
    return Response(result.model_dump_json(exclude_none=True), media_type="application/json")


@router.post("/plans", status_code=202, response_model=PlanJob, summary="start a batch plan as a background job",
             responses={**COMMON, 429: {"model": ErrorBody, "description": "too many jobs queued"}})
async def submit_plan(body: PlanRequest, request: Request) -> Response:
    st = state(request)
    _check_size(body, st.settings.job_plan_limit, " for a plan job")
    await run_in_threadpool(st.service.check_plan, body)  # a bad name is 422 now, not a failed job later
    job = await run_in_threadpool(st.jobs.submit, body)  # the jobs file: never waited on by the event loop
    return _json(job, status=202, headers={"Location": f"/v1/plans/{job.id}"})


@router.get("/plans/{job_id}", response_model=PlanJob, summary="a plan job's status, then its plan",
            responses={404: {"model": ErrorBody, "description": "unknown or expired job"}})
async def get_plan(job_id: str, request: Request) -> Response:
    return Response(await run_in_threadpool(state(request).jobs.get_json, job_id), media_type="application/json")


@router.delete("/plans/{job_id}", response_model=PlanJob,
               summary="cancel a queued or running plan job (its id is the right to: submitting and reading are open)",
               responses={404: {"model": ErrorBody, "description": "unknown or expired job"},
                          409: {"model": ErrorBody, "description": "the job has already finished"}})
async def cancel_plan(job_id: str, request: Request) -> Response:
    return _json(await run_in_threadpool(state(request).jobs.cancel, job_id))
