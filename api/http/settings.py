"""Limits and knobs of the HTTP service, in one validated object.

Every limit the service enforces lives here so the README, the OpenAPI text and the
413/422 messages all quote the same numbers, and tests can build apps with tighter ones.
"""
from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

ADMIN_TOKEN_ENV = "PICKWISE_ADMIN_TOKEN"

# A prompt longer than this is refused with 422 (field `prompt`). The predictor reads only
# the head and tail of a prompt (128 tokens), but its full length sets the cost estimate and
# the context-window check, so it is counted, not cut. 200k chars is ~50k tokens.
MAX_PROMPT_CHARS = 200_000


def _token_from_env() -> str | None:
    return os.environ.get(ADMIN_TOKEN_ENV) or None


class ServiceSettings(BaseModel):
    """Service limits; defaults are what `pickwise serve` runs with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    admin_token: str | None = Field(
        default_factory=_token_from_env,
        description=f"bearer token for registry writes (env {ADMIN_TOKEN_ENV}); None disables writes",
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0, description="request bodies above this get 413")
    max_batch: int = Field(32, ge=1, description="most prompts in one micro-batched predictor call")
    max_wait_ms: float = Field(
        0.0, ge=0.0,
        description="longest a prompt waits for others to join its batch; 0 (continuous batching): a prompt "
                    "goes at once when the encoder is idle, and those arriving while it runs form the next batch")
    max_queue: int = Field(
        64, ge=1,
        description="most prompts waiting for the encoder; a select beyond it gets 429 with Retry-After at once "
                    "instead of queueing (64 is about 1 s of waiting on 2 CPU cores at full load, and admits a "
                    "burst of 64 concurrent selects behind the batch being encoded)")
    encoder_lanes: int | None = Field(
        None, ge=1,
        description="most micro-batches encoded at once, each on one thread; None: as many as the predictor "
                    "can run side by side (the int8 ONNX encoder: its thread count; a torch encoder: 1)")
    sync_plan_limit: int = Field(1_000, ge=1, description="most prompts POST /v1/plan answers inline")
    job_plan_limit: int = Field(20_000, ge=1, description="most prompts in one POST /v1/plans job")
    job_queue_limit: int = Field(4, ge=1, description="plan jobs waiting or running at once; more get 429")
    job_keep: int = Field(100, ge=1, description="plan jobs remembered (finished ones are evicted oldest first)")
    job_ttl_s: float = Field(3600.0, gt=0.0, description="a finished job is forgotten this long after it ends")
