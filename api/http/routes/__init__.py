"""HTTP routes, one module per area; each reaches the app's shared state through `state(request)`."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from pickwise.api.gateway import Forwarder
from pickwise.api.http.batcher import MicroBatcher
from pickwise.api.http.errors import ClientGone, HttpError, unreadable_json
from pickwise.api.http.jobs import PlanJobs
from pickwise.api.http.promotions import PromotionWatcher
from pickwise.api.http.settings import ServiceSettings
from pickwise.api.http.telemetry import ServiceMetrics
from pickwise.api.service import PickwiseService
from pickwise.registry.jsonl import RepeatedKey, unique_keys


@dataclass
class AppState:
    """What one app instance shares between requests (stored at app.state.pickwise)."""

    service: PickwiseService
    batcher: MicroBatcher
    metrics: ServiceMetrics
    jobs: PlanJobs
    settings: ServiceSettings
    forwarder: Forwarder
    watcher: PromotionWatcher | None = None  # following the promotion pointer (serve without --artifact)


class BodyErrorRoute(APIRoute):
    """A route whose JSON body json.loads rejects for a reason other than syntax (a 5,000-digit
    integer, nesting 100,000 deep) says what and where; FastAPI answers a bare 400 "There was an
    error parsing the body". A body that names a key twice in one object is refused (422) rather
    than read as its last value, as the registry refuses a repeated YAML key."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if "json" in request.headers.get("content-type", ""):
                try:
                    # parsed once: Request.json(), which FastAPI reads the body with, returns what it cached
                    request._json = json.loads(await request.body(), object_pairs_hook=unique_keys)
                except RepeatedKey as exc:
                    message = f"key {exc.key!r} appears twice in one JSON object; send each key once"
                    raise HttpError(422, "validation_error", f"body: {message}",  # listed as every 422 lists them
                                    errors=[{"loc": ["body"], "msg": message, "type": "json_invalid"}]) from None
                except (ValueError, RecursionError):
                    pass  # syntax and the rest: FastAPI's own parse reports them, below
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


async def unless_disconnected(request: Request, work):
    """Await `work`, but drop it when the client disconnects first (ClientGone, a 499): under overload,
    prompts whose callers gave up leave the micro-batcher's queue instead of costing encoder time, and
    a gateway call whose caller left is cancelled upstream too."""
    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not job.done():
        job.cancel()
        raise ClientGone()
    return job.result()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
