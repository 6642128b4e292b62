"""The server's limits on gateway calls (PICKWISE_GATEWAY_LIMITS, `serve --gateway-limits`).

The defaults (`options.py`) are a policy a request overrides field by field; limits are bounds it can
only tighten. A team that pays for the calls sets them once: caps a request cannot raise, a floor it
cannot lower, the models callers may reach (by route or by name), and no `on_infeasible` fallback
that breaks a limited cap or floor: a fallback is then chosen among the models within them.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pickwise.api.environment import GATEWAY_LIMITS_ENV as LIMITS_ENV
from pickwise.api.errors import ModelNotServed, OutsideLimits, quoted
from pickwise.api.gateway.options import MAX_ATTEMPTS_LIMIT, GatewayOptions, parse_json_object
from pickwise.registry import ModelSpec, RegistrySnapshot
from pickwise.registry.schema import Capability

# a fallback's broken constraints (`Decision.violates`) and the limit each belongs to
_BROKEN = {"cost cap": "max_cost_usd", "latency cap": "max_latency_ms", "quality floor": "min_quality",
           "low confidence": "min_quality"}


class GatewayLimits(BaseModel):
    """What no routed (or, for the models, named) call may go beyond."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    max_cost_usd: float | None = Field(None, ge=0.0, description="the highest estimated cost of a call")
    max_latency_ms: float | None = Field(None, gt=0.0, description="the highest estimated latency of a call")
    min_quality: float | None = Field(None, gt=0.0, le=1.0, description="the lowest predicted quality routed to")
    models: list[str] | None = Field(None, min_length=1, description="the only models callers may reach")
    exclude: list[str] = Field(default_factory=list, description="models callers may never reach")
    requires: list[Capability] = Field(default_factory=list, description="capabilities every routed model needs")
    allow_low_confidence: Literal[False] | None = Field(
        None, description="false: a low-confidence quality never meets the floor, whatever a request says")
    allow_base_models: Literal[False] | None = Field(
        None, description="false: base models never take open-ended prompts, whatever a request says")
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS_LIMIT, description="the most models tried")

    def allows(self, spec: ModelSpec, snapshot: RegistrySnapshot) -> bool:
        """Whether callers may reach this model (names compared as the registry resolves them)."""
        if any(n in snapshot and snapshot.get(n).name == spec.name for n in self.exclude):
            return False
        return self.models is None or any(n in snapshot and snapshot.get(n).name == spec.name for n in self.models)

    def prices_answers(self) -> str:
        """What the limits cap that an answer's length drives ('cost', 'latency', both or ''): a request's
        expected_output_tokens, a claim nothing holds the answer to, may not lower those estimates."""
        return " and ".join(w for w, cap in (("cost", self.max_cost_usd), ("latency", self.max_latency_ms))
                            if cap is not None)

    def set_fields(self) -> dict[str, Any]:
        """The limits set, as JSON (what a 409 or 403 reports)."""
        return self.model_dump(exclude_defaults=True)


def parse_limits(text: str | None) -> GatewayLimits:
    """The limits from their JSON text (none: no bounds); ValueError naming the field otherwise."""
    if text is None or not text.strip():
        return GatewayLimits()
    return parse_json_object(text, GatewayLimits, "limits")


def _smaller(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def bounded(options: GatewayOptions, limits: GatewayLimits, snapshot: RegistrySnapshot,
            served: list[ModelSpec]) -> GatewayOptions:
    """A routed request's options within the limits: each cap the smaller, the floor the higher, the
    pool within the allowed models (a request naming one outside them is refused: OutsideLimits), of
    which those `served` now (enabled, with an endpoint) are its allow-list when it names none."""
    update: dict[str, Any] = {
        "max_cost_usd": _smaller(options.max_cost_usd, limits.max_cost_usd),
        "max_latency_ms": _smaller(options.max_latency_ms, limits.max_latency_ms),
        "min_quality": max((q for q in (options.min_quality, limits.min_quality) if q is not None), default=None),
        # a limited name removed while serving (serve checked them all) can be reached by no one: it excludes nothing
        "exclude": list(dict.fromkeys([*options.exclude, *(n for n in limits.exclude if n in snapshot)])),
        "requires": list(dict.fromkeys([*options.requires, *limits.requires])),
        "allow_low_confidence": options.allow_low_confidence and limits.allow_low_confidence is None,
        "allow_base_models": options.allow_base_models and limits.allow_base_models is None,
        "max_attempts": min(options.max_attempts, limits.max_attempts or options.max_attempts),
    }
    if options.expected_output_tokens is not None and limits.prices_answers():
        raise OutsideLimits(f"this server limits each call's estimated {limits.prices_answers()} ({LIMITS_ENV}), "
                            "which prices every model's own expected answer: bound the answer with max_tokens "
                            "instead", param="pickwise.expected_output_tokens")
    for name in options.models or ():
        if name in snapshot and not limits.allows(snapshot.get(name), snapshot):
            raise OutsideLimits(f"{quoted(name)} is outside the models this server lets callers reach "
                                f"({LIMITS_ENV})", param="pickwise.models")
    if limits.models is not None:
        if options.models is None:
            update["models"] = [s.name for s in served if limits.allows(s, snapshot)]
            if not update["models"]:
                raise ModelNotServed(f"none of the models this server lets callers reach ({LIMITS_ENV}) can be "
                                     "called now: each is disabled, without an endpoint or removed", param="model")
    return options.model_copy(update=update)


def check_defaults(defaults: dict[str, Any], limits: GatewayLimits, snapshot: RegistrySnapshot,
                   limits_from: str = LIMITS_ENV) -> None:
    """ValueError naming a default the limits refuse (a model of the allow-list they keep callers from, an
    expected_output_tokens under a cost or latency limit): every call that does not override it would be
    refused (403) for the server's setting. `limits_from`: the option or variable the limits came from."""
    for name in defaults.get("models") or ():
        if name in snapshot and not limits.allows(snapshot.get(name), snapshot):
            raise ValueError(f"models: {name!r} is outside the models {limits_from} lets callers reach")
    if defaults.get("expected_output_tokens") is not None and limits.prices_answers():
        raise ValueError(f"expected_output_tokens: {limits_from} limits the estimated {limits.prices_answers()}, "
                         "which prices every model's own expected answer")


def check_named(spec: ModelSpec, limits: GatewayLimits, snapshot: RegistrySnapshot) -> None:
    """OutsideLimits for a named call to a model callers may not reach."""
    if not limits.allows(spec, snapshot):
        raise OutsideLimits(f"model {quoted(spec.name)} is outside the models this server lets callers reach "
                            f"({LIMITS_ENV})", param="model")


def broken_limits(violates: list[str], limits: GatewayLimits) -> list[str]:
    """The limits a fallback decision breaks (its `violates`), by field name."""
    return list(dict.fromkeys(_BROKEN[v] for v in violates if v in _BROKEN and getattr(limits, _BROKEN[v]) is not None))


def _bars(limits: GatewayLimits, field: str, value: float | bool) -> bool:
    """Whether the limits forbid a request to set `field` to `value`."""
    limit = getattr(limits, field, None)
    if limit is None:
        return False
    if field in ("max_cost_usd", "max_latency_ms"):
        return value > limit
    if field == "min_quality":
        return value < limit
    return value is True and limit is False  # allow_low_confidence, allow_base_models


def ways_within(ways: dict[str, float | bool], limits: GatewayLimits) -> tuple[dict[str, float | bool], list[str]]:
    """The ways out of a 409 (`api.way_out`) a caller may take under the limits, and the fields of those
    the limits bar (a caller told to raise a cap past its limit would only get the same 409)."""
    barred = [k for k, v in ways.items() if _bars(limits, k, v)]
    return {k: v for k, v in ways.items() if k not in barred}, barred
