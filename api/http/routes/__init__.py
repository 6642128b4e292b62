"""HTTP routes, one module per area; each reaches the app's shared state through `state(request)`."""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, Response
from pydantic import BaseModel

from pickwise.api.http.batcher import MicroBatcher
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


def state(request: Request) -> AppState:
    return request.app.state.pickwise


def json_response(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The model serialised once by pydantic (routes' response_model then only documents the schema)."""
    return Response(model.model_dump_json(), status_code=status, media_type="application/json", headers=headers)
