"""Limits and knobs of the HTTP service, in one validated object.

Every limit the service enforces lives here so the README, the OpenAPI text and the
413/422 messages all quote the same numbers, and tests can build apps with tighter ones.
Each can also be set from the environment as PICKWISE_<FIELD> (PICKWISE_ADMIN_TOKEN,
PICKWISE_MAX_BATCH, ...): that is how `serve --workers N` hands its options to each worker.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pickwise.api.environment import (
    ADMIN_TOKEN_ENV,
    API_KEYS_ENV,
    ENV_PREFIX,
    FEEDBACK_TOKEN_ENV,
    GATEWAY_DEFAULTS_ENV,
    GATEWAY_LIMITS_ENV,
)

__all__ = ["ADMIN_TOKEN_ENV", "API_KEYS_ENV", "ENV_PREFIX", "FEEDBACK_TOKEN_ENV", "GATEWAY_DEFAULTS_ENV",
           "GATEWAY_LIMITS_ENV", "ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Service limits; defaults are what `pickwise serve` runs with."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    admin_token: str | None = Field(
        None, description=f"bearer token for registry writes (env {ADMIN_TOKEN_ENV}); None disables writes",
    )
    api_keys: str | None = Field(
        None, description=f"comma-separated keys (env {API_KEYS_ENV}); when set, every /openai/v1 request needs one "
                          "as its bearer token",
    )
    upstream_max_connections: int = Field(
        256, ge=1, description="most connections open to upstream model servers at once (the gateway's concurrency "
                               "bound); a call past it waits for one, at most its endpoint's timeout, then gets 429")
    gateway_defaults: str | None = Field(
        None, description=f"the gateway's routing policy (env {GATEWAY_DEFAULTS_ENV}): a JSON object of fields of a "
                          "request's `pickwise` object, which a request's own fields override one by one; None: "
                          "the built-in defaults (min_cost, no floor)")
    gateway_limits: str | None = Field(
        None, description=f"the gateway's limits (env {GATEWAY_LIMITS_ENV}): a JSON object of caps, a floor, "
                          "models, exclude, requires, allow_* false and max_attempts that a request may tighten "
                          "but never loosen, and that no fallback breaks; None: no limits")
    feedback_token: str | None = Field(
        None, description=f"bearer token for POST /v1/feedback (env {FEEDBACK_TOKEN_ENV}); the admin token is "
                          "accepted too; with neither set, feedback is refused",
    )
    outcome_store: str | None = Field(
        None, description="the outcome store feedback goes to and decisions are kept in: a SQLite file, or a "
                          "postgresql://user:pass@host:port/db URL that replicas on several hosts share; None: "
                          "$PICKWISE_HOME/outcomes.sqlite",
    )
    decision_keep_s: float = Field(
        7 * 86400.0, gt=0.0, description="how long a decision (a select's, a routed gateway call's) is kept in the "
                                         "outcome store for feedback by its id; older ones are deleted")
    decision_max: int = Field(
        1_000_000, ge=1, description="most decisions kept in the store (shared by every server on it); past it the "
                                     "oldest are deleted")
    decision_keep_prompt: bool = Field(
        True, description="false: a decision keeps the prompt's sha256 and vector, not its text (feedback on it then "
                          "stores the hash only, whatever its keep_prompt)")
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
    sync_plan_limit: int = Field(1_000, ge=1, description="most prompts POST /v1/plan and POST /v1/predict answer inline")
    job_plan_limit: int = Field(20_000, ge=1, description="most prompts in one POST /v1/plans job")
    job_queue_limit: int = Field(4, ge=1, description="plan jobs waiting or running at once; more get 429")
    job_store: str | None = Field(
        None, description="the SQLite file plan jobs live in, shared by every worker process (one host); None: "
                          "jobs.sqlite beside the outcome store file, or in $PICKWISE_HOME when the store is a URL")
    job_keep: int = Field(100, ge=1, description="plan jobs remembered (finished ones are evicted oldest first)")
    job_ttl_s: float = Field(3600.0, gt=0.0, description="a finished job is forgotten this long after it ends")
    job_keep_bytes: int = Field(
        256 * 1024 * 1024, ge=1024,
        description="most bytes of finished jobs' answers (their JSON) kept; past it the oldest finished "
                    "jobs are forgotten first, and a job whose answer alone is larger fails")

    header_timeout_s: float = Field(
        10.0, gt=0.0, description="most seconds from a connection's start (or a request's first byte) to the end of "
                                  "the request's headers; past it: 408 and the connection is closed")
    body_timeout_s: float = Field(
        30.0, gt=0.0, description="most seconds from the end of the headers to the body's last byte; past it: 408 "
                                  "and the connection is closed (an 8 MiB body needs 2.3 Mbit/s)")
    keep_alive_s: int = Field(5, ge=1, description="an idle keep-alive connection is closed after this many seconds "
                                                   "(uvicorn's timeout_keep_alive)")

    @field_validator("admin_token", "api_keys", "feedback_token")
    @classmethod
    def _empty_token_is_none(cls, token: str | None) -> str | None:
        return token or None  # PICKWISE_ADMIN_TOKEN= (set but empty) disables writes, as unset does

    @field_validator("gateway_defaults", "gateway_limits")
    @classmethod
    def _gateway_json(cls, text: str | None, info: ValidationInfo) -> str | None:
        from pickwise.api.gateway.limits import parse_limits  # the gateway's models: only when one is set
        from pickwise.api.gateway.options import parse_defaults

        if text is None or not text.strip():
            return None
        (parse_defaults if info.field_name == "gateway_defaults" else parse_limits)(text)  # a ValueError names the field
        return text

    @cached_property
    def limits(self):
        """The gateway's limits (`gateway.limits.GatewayLimits`, parsed once; none set: no bounds)."""
        from pickwise.api.gateway.limits import parse_limits

        return parse_limits(self.gateway_limits)

    @cached_property
    def gateway_options(self) -> dict[str, Any]:
        """The fields of `gateway_defaults` (parsed once), which a routed request starts from."""
        from pickwise.api.gateway.options import parse_defaults

        return {} if self.gateway_defaults is None else parse_defaults(self.gateway_defaults)

    def uvicorn_options(self, workers: int = 1) -> dict:
        """uvicorn's options for these read bounds: the head timeout lives in the protocol class (with
        several workers, the import path; each worker's app factory sets its timeout)."""
        from pickwise.api.http.timeouts import header_timeout_protocol

        http = "pickwise.api.http.timeouts:HeaderTimeoutProtocol" if workers > 1 \
            else header_timeout_protocol(self.header_timeout_s)
        return {"http": http, "timeout_keep_alive": self.keep_alive_s}

    @property
    def client_keys(self) -> tuple[str, ...]:
        """The keys of PICKWISE_API_KEYS; empty: the gateway is open."""
        return tuple(k.strip() for k in (self.api_keys or "").split(",") if k.strip())

    def environment(self) -> dict[str, str]:
        """These settings as the PICKWISE_* variables that rebuild them in another process (no token or
        keys: a worker reads those from the environment it inherits; nor the outcome store, whose URL may
        hold a password: `serve --workers` hands it over in a file)."""
        values = self.model_dump(exclude={"admin_token", "api_keys", "feedback_token", "outcome_store"},
                                 exclude_defaults=True)
        # a policy set to none (`serve --gateway-limits ''`) stays none in a worker that inherits one from the
        # environment, as it does with one worker
        values |= {name: "" for name in ("gateway_defaults", "gateway_limits")
                   if name in self.model_fields_set and getattr(self, name) is None}
        return {ENV_PREFIX + name.upper(): str(value) for name, value in values.items()}
