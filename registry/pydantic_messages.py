"""Turn pydantic validation errors into "field X: expected Y, got Z" sentences.

pydantic's own messages ("Input should be greater than or equal to 0") do not
say what a registry author should write instead; these do, and they name the
allowed keys when a key is unknown. For a union field (`probe.results: str |
list[...]`) pydantic reports every branch; the value's own type picks the branch
the author meant, so only that branch's errors are kept.
"""
from __future__ import annotations

import re
import reprlib
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from pickwise.registry.schema import Endpoint, Latency, ModelSpec, Pricing, Probe, ProbeResult

# The model a mapping at a given key holds, for listing allowed keys of an unknown-key error.
_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "pricing": Pricing,
    "latency": Latency,
    "probe": Probe,
    "results": ProbeResult,
    "endpoint": Endpoint,
}
# pydantic inserts the union member's type into the location (`results.str`); readers never wrote that.
_UNION_TAG = re.compile(r"^(str|int|float|bool|none|list\[.*\]|tuple\[.*\])$")
# Error types meaning "the value is not of this type at all", with what the author should write instead.
_EXPECTED: dict[str, str] = {
    "float_type": "a number", "float_parsing": "a number",
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "string_type": "a string", "bool_type": "true or false", "bool_parsing": "true or false",
    "list_type": "a list", "tuple_type": "a list", "model_type": "a mapping", "dict_type": "a mapping",
    "model_attributes_type": "a mapping",
}

# PyYAML follows YAML 1.1, where a float's exponent needs a point and a sign: `1e3` and `1.0e3` are
# strings, `1.0e+3` is 1000.0. An author's number, read as text.
_TEXT_EXPONENT = re.compile(r"^([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))[eE]([-+]?)([0-9]+)$")


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


# bounded: a full repr of a YAML "billion laughs" value (aliases of aliases) never ends
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict, _SHORT_REPR.maxstring = 3, 6, 6, 60


def _got(value: Any) -> str:
    text = _SHORT_REPR.repr(value)
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
    if kind in _EXPECTED:
        text = f"expected {_EXPECTED[kind]}, got {_got(value)}"
        match = _TEXT_EXPONENT.match(value) if _EXPECTED[kind] == "a number" and isinstance(value, str) else None
        if match:
            whole, point, sign = match.group(1), "" if "." in match.group(1) else ".0", match.group(2) or "+"
            text += (f" (YAML reads an exponent without a decimal point and a sign as text: "
                     f"write {whole}{point}e{sign}{match.group(3)})")
        return text
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']}, got {_got(value)}"


def _union_branch(loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    """(location of the union field, branch tag) for an error inside a union branch; None otherwise."""
    for i, part in enumerate(loc):
        if isinstance(part, str) and _UNION_TAG.match(part):
            return loc[:i], part
    return None


def _rejects_type(error: dict[str, Any], site: tuple[Any, ...]) -> bool:
    """True when the branch refused the value's type outright (`expected a string, got [...]`)."""
    return len(error["loc"]) == len(site) + 1 and error["type"] in _EXPECTED


def _select_union_branches(errors: list[dict[str, Any]]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(location, sentence) per error, keeping only the errors of the union branch the value's type selects.

    A list given to `str | list[ProbeResult]` fails the `str` branch by type and
    the list branch on its contents; only the contents errors help the author.
    When every branch refuses the type, the branches become one sentence.
    """
    branches: dict[tuple[Any, ...], dict[str, list[dict[str, Any]]]] = {}
    for error in errors:
        found = _union_branch(error["loc"])
        if found is not None:
            branches.setdefault(found[0], {}).setdefault(found[1], []).append(error)
    merged: set[tuple[Any, ...]] = set()
    for error in errors:
        found = _union_branch(error["loc"])
        if found is None:
            yield clean_loc(error["loc"]), describe(error)
            continue
        site, tag = found
        refused = {t for t, errs in branches[site].items() if all(_rejects_type(e, site) for e in errs)}
        if len(refused) < len(branches[site]):  # some branch accepted the type: its errors are the real ones
            if tag not in refused:
                yield clean_loc(error["loc"]), describe(error)
        elif site not in merged:
            merged.add(site)
            kinds = [_EXPECTED[e["type"]] for errs in branches[site].values() for e in errs]
            yield site, f"expected {' or '.join(dict.fromkeys(kinds))}, got {_got(error['input'])}"


def iter_field_errors(exc: ValidationError) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(location, sentence) for every error, each location/sentence pair once (unions repeat them)."""
    seen: set[tuple[tuple[Any, ...], str]] = set()
    for item in _select_union_branches(exc.errors()):
        if item not in seen:
            seen.add(item)
            yield item
