"""Turn pydantic validation errors into "field X: expected Y, got Z" sentences.

pydantic's own messages ("Input should be greater than or equal to 0") do not
say what a registry author should write instead; these do, and they name the
allowed keys when a key is unknown.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from pydantic import BaseModel, ValidationError

from .schema import Latency, ModelSpec, Pricing, Probe, ProbeResult

# The model a mapping at a given key holds, for listing allowed keys of an unknown-key error.
_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "pricing": Pricing,
    "latency": Latency,
    "probe": Probe,
    "results": ProbeResult,
}
# pydantic inserts the union member's type into the location (`results.str`); readers never wrote that.
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|list\[.*\]|tuple\[.*\])$")


def clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The error location without pydantic's union-member tags."""
    return tuple(p for p in loc if not (isinstance(p, str) and _UNION_TAG.match(p)))


def field_path(loc: tuple[Any, ...]) -> str:
    """`('pricing', 'input_per_million')` -> `pricing.input_per_million`; list indexes as `[i]`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    names = [p for p in parent if isinstance(p, str)]
    model = _SECTION_MODELS.get(names[-1], ModelSpec) if names else ModelSpec
    return list(model.model_fields)


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(error: dict[str, Any]) -> str:
    """One pydantic error dict -> a sentence saying what was expected and what was found."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = clean_loc(error["loc"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return f"unknown key (allowed: {', '.join(_allowed_keys(loc[:-1]))})"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
        return f"expected a number {bounds[kind]} {limit}, got {_got(value)}"
    expected = {
        "float_type": "a number", "float_parsing": "a number",
        "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
        "string_type": "a string", "bool_type": "true or false", "bool_parsing": "true or false",
        "list_type": "a list", "tuple_type": "a list", "model_type": "a mapping", "dict_type": "a mapping",
        "model_attributes_type": "a mapping",
    }
    if kind in expected:
        return f"expected {expected[kind]}, got {_got(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']}, got {_got(value)}"


def iter_field_errors(exc: ValidationError) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(location, sentence) for every error, each location/sentence pair once (unions repeat them)."""
    seen: set[tuple[tuple[Any, ...], str]] = set()
    for error in exc.errors():
        item = (clean_loc(error["loc"]), describe(error))
        if item not in seen:
            seen.add(item)
            yield item
