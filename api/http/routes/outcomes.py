"""Outcomes over HTTP: POST /v1/feedback stores how a model did; GET /v1/outcomes/stats counts them.

Feedback is a write that refits will learn from, so it needs a bearer token: PICKWISE_FEEDBACK_TOKEN
(for the applications that report outcomes) or the admin token; with neither set it is refused.
"""
from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from pickwise.api.http.auth import check_bearer
from pickwise.api.http.errors import HttpError
from pickwise.api.http.routes import BodyErrorRoute, state
from pickwise.api.http.routes import json_response as _json
from pickwise.api.http.settings import ADMIN_TOKEN_ENV, FEEDBACK_TOKEN_ENV
from pickwise.api.schemas import ErrorBody, FeedbackRequest, FeedbackStored, ValidationErrorBody

router = APIRouter(prefix="/v1", tags=["outcomes"], route_class=BodyErrorRoute)
bearer = HTTPBearer(auto_error=False, description=f"the token in {FEEDBACK_TOKEN_ENV} (or {ADMIN_TOKEN_ENV})")


def require_feedback_token(request: Request,
                           credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    settings = state(request).settings
    accepted = [t for t in (settings.feedback_token, settings.admin_token) if t]
    if not accepted:
        raise HttpError(403, "forbidden", f"feedback is disabled: the server was started without "
                                             f"{FEEDBACK_TOKEN_ENV} or {ADMIN_TOKEN_ENV}")
    check_bearer(credentials, accepted, missing="feedback needs 'Authorization: Bearer <token>'",
                 wrong="wrong bearer token")


@router.post("/feedback", status_code=201, response_model=FeedbackStored, dependencies=[Depends(require_feedback_token)],
             summary="store how a model did on a prompt (by decision id, or by prompt and model)",
             responses={400: {"model": ErrorBody, "description": "body is not UTF-8 JSON text"},
                        401: {"model": ErrorBody}, 403: {"model": ErrorBody},
                        413: {"model": ErrorBody, "description": "body too large"},
                        404: {"model": ErrorBody, "description": "unknown or forgotten decision id"},
                        422: {"model": ValidationErrorBody},
                        503: {"model": ErrorBody, "description": "keep_prompt false needs the predictor, still loading"}})
async def feedback(body: FeedbackRequest, request: Request) -> Response:
    stored = await run_in_threadpool(state(request).service.feedback, body)
    return _json(stored, status=201)


@router.get("/outcomes/stats", summary="outcomes stored, per model and per day")
async def outcome_stats(request: Request) -> Response:
    stats = await run_in_threadpool(lambda: state(request).service.outcome_store.stats())
    stats.pop("store", None)  # a server path is no business of a client
    return Response(json.dumps(stats), media_type="application/json")
