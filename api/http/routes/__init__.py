"""HTTP routes, one module per area; each reaches the app's shared state through `state(request)`."""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from pickwise.api.http.batcher import MicroBatcher
from pickwise.api.http.errors import HttpError, unreadable_json
from pickwise.api.http.jobs import PlanJobs
from pickwise.api.http.settings import ServiceSettings
from pickwise.api.http.telemetry import ServiceMetrics
from pickwise.api.service import PickwiseService


@dataclass
class AppState:
    """What one app instance shares between requests (stored at app.state.pickwise)."""

    service: PickwiseService
    batcher: MicroBatcher
    metrics: ServiceMetrics
    jobs: PlanJobs
    settings: ServiceSettings


class BodyErrorRoute(APIRoute):
    """A route whose JSON body json.loads rejects for a reason other than syntax (a 5,000-digit
    integer, nesting 100,000 deep) says what and where; FastAPI answers a bare 400 "There was an
    error parsing the body"."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                cause = exc.__cause__
                if exc.status_code == 400 and isinstance(cause, (ValueError, RecursionError)) \
                        and not isinstance(cause, UnicodeDecodeError):
                    detail = unreadable_json(await request.body(), cause)  # the body read is cached
                    if detail:
                        raise HttpError(400, "bad_request", detail) from None
                raise

        return route


def state(request: Request) -> AppState:
    return request.app.state.pickwise


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The model serialised once by pydantic (routes' response_model then only documents the schema)."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json", headers=headers)
