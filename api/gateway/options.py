"""A routed chat request's `pickwise` options, and the server's defaults for them.

A team deploying the gateway sets its routing policy once (PICKWISE_GATEWAY_DEFAULTS, or `serve
--gateway-defaults`): any fields of the `pickwise` object, checked at startup by the same model a
request's object is. A request's own fields override them one by one; a field a request sets to
null is unset, as OpenAI reads null, so the server's default applies to it.
"""
from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pickwise.api.schemas import MAX_OUTPUT_TOKENS, MAX_WILLINGNESS_TO_PAY
from pickwise.registry import RegistrySnapshot
from pickwise.selector import SelectionConstraints

DEFAULT_MAX_ATTEMPTS = 3
MAX_ATTEMPTS_LIMIT = 10
Policy = Literal["built-in", "server", "request", "server+request"]


class GatewayOptions(SelectionConstraints):
    """The `pickwise` object of a chat request (the SDK sends it with `extra_body`): the constraints of
    `/v1/select`, with their meaning, and how many models to try."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    max_models: Literal[1] = Field(1, description="the gateway forwards to one model at a time")
    expected_output_tokens: int | None = Field(None, ge=0, le=MAX_OUTPUT_TOKENS,
                                               description="override each model's expected output length")
    willingness_to_pay: float | None = Field(None, ge=0.0, le=MAX_WILLINGNESS_TO_PAY,
                                             description="for 'balanced': USD the caller would pay for +1.0 quality")
    max_attempts: int = Field(DEFAULT_MAX_ATTEMPTS, ge=1, le=MAX_ATTEMPTS_LIMIT,
                              description="models tried at most, down the decision's ranking")


def given(fields: dict[str, Any] | None) -> dict[str, Any]:
    """The fields a `pickwise` object sets: null is unset, as OpenAI reads it (typed clients send every
    optional field), so it leaves the server's default in place."""
    return {k: v for k, v in (fields or {}).items() if v is not None}


def merged(defaults: dict[str, Any], fields: dict[str, Any] | None) -> dict[str, Any]:
    """The server's defaults with a request's fields over them, field by field. A request that picks
    another objective than 'balanced' drops the default's willingness_to_pay: that price belongs to
    'balanced', and would otherwise make the request invalid (one that asks for 'balanced' keeps it)."""
    request = given(fields)
    base = dict(defaults)
    if request.get("objective", "balanced") != "balanced" and "willingness_to_pay" not in request:
        base.pop("willingness_to_pay", None)
    return {**base, **request}


def request_options(defaults: dict[str, Any], fields: dict[str, Any] | None) -> GatewayOptions:
    """A request's options under the server's defaults (pydantic's ValidationError when invalid)."""
    return GatewayOptions.model_validate(merged(defaults, fields))


def policy(defaults: dict[str, Any], fields: dict[str, Any] | None) -> Policy:
    """Whose options routed a request: the built-in defaults alone, the server's, the request's, or both."""
    server, request = bool(defaults), bool(given(fields))
    return ("server+request" if request else "server") if server else ("request" if request else "built-in")


def from_server(defaults: dict[str, Any], fields: dict[str, Any] | None) -> dict[str, Any]:
    """The server's defaults a request left in place (those it did not override)."""
    request = given(fields)
    return {k: v for k, v in merged(defaults, fields).items() if k not in request}


def check_names(defaults: dict[str, Any], snapshot: RegistrySnapshot) -> None:
    """ValueError naming a model of the defaults' `models` or `exclude` that the registry does not hold
    at startup (a typo would otherwise exclude nothing, or be dropped from the allow-list)."""
    for field in ("models", "exclude"):
        for name in defaults.get(field) or ():
            if name not in snapshot:
                raise ValueError(f"{field}: unknown model {name!r}{snapshot.did_you_mean(name)}")


def parse_json_object(text: str, model: type[BaseModel], what: str) -> BaseModel:
    """`model` validated from a JSON object's text (a server setting): ValueError naming each field
    that is wrong, or saying the text is no JSON object (of `what`)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object of {what}, as a request's `pickwise` object")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"{where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}")
        raise ValueError("; ".join(problems)) from None


def parse_defaults(text: str) -> dict[str, Any]:
    """The server's defaults from their JSON text: an object of `pickwise` fields, checked as a request's
    object is (model names excepted: the registry can change while serving, so a request checks them).
    ValueError naming the field otherwise."""
    parse_json_object(text, GatewayOptions, "routing options")
    return given(json.loads(text))
