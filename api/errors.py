"""The service's own refusals, and the one JSON shape every refusal takes.

PickwiseService raises domain errors only: these, and those of the layers below (RegistryError,
InfeasibleSelection, PlanInfeasible, ...). `error_body` turns any of them into
`{"error": code, "detail": message, ...facts}`; the HTTP app maps the code to a status
(`pickwise.api.http.errors`), the CLI to an exit code (`pickwise.api.cli.main`).
"""
from __future__ import annotations

from typing import Any

from pickwise.errors import PickwiseError
from pickwise.registry import RegistryConflict, RegistryError
from pickwise.registry.errors import StoreUnavailable
from pickwise.selector.errors import BudgetInfeasible, InfeasibleSelection, PlanInfeasible, SelectorInputError


class RequestFieldError(PickwiseError, ValueError):
    """A request field is wrong in a way its schema cannot say (an unknown model name, say)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ModelNotFound(PickwiseError, LookupError):
    """No registered model answers to a name. The registry's own error also names its directory,
    which a caller of the service has no business learning."""

    def __init__(self, name: str, hint: str = "", listing: str = "GET /v1/models"):
        """`hint`: the registry's did-you-mean; `listing`: what lists the models, in the front end's terms."""
        super().__init__(f"unknown model {quoted(name)}{hint} ({listing} lists them)")
        self.name = name


class NoFeasibleModel(InfeasibleSelection):
    """An infeasible select, told in one sentence, with `way_out`: {constraint: the value that alone
    would make it feasible} (pickwise.api.way_out); `blocking` keeps every model's reasons."""

    def __init__(self, blocking: dict[str, list[str]], way_out: dict[str, float | bool], message: str,
                 way_out_together: dict[str, float | bool] | None = None):
        super().__init__(blocking, message)
        self.way_out = way_out
        self.way_out_together = way_out_together or {}


class DecisionNotFound(PickwiseError, LookupError):
    """Feedback names a decision this process does not know (never made here, or forgotten)."""


class NotReady(PickwiseError):
    """The predictor is still loading, or failed to load."""


class ModelNotServed(PickwiseError, LookupError):
    """The gateway cannot call the model a request names: unknown, disabled or without an endpoint."""

    def __init__(self, message: str, param: str = "model"):
        super().__init__(message)
        self.param = param


class InvalidParameter(PickwiseError, ValueError):
    """A well-formed chat request parameter that the model it would go to refuses (OpenAI answers 400):
    `param` names it. The gateway answers it before calling an upstream, whose refusal would not fall back."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class OutsideLimits(PickwiseError):
    """A gateway request asks for what the server's limits forbid (a model outside them, say): `param`
    names the field. Unlike the defaults, a request cannot override the limits."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class GatewayBusy(PickwiseError):
    """Every upstream connection the gateway may open is in use, and none came free in time."""


class AllAttemptsFailed(PickwiseError):
    """No model the gateway tried answered; `attempts` says what each one did (Attempt-like objects
    with `model`, `outcome`, `seconds`)."""

    def __init__(self, attempts, untried: int = 0):
        tried = "; ".join(f"{a.model}: {a.outcome}" for a in attempts)
        more = f"; {untried} more model(s) meet the constraints, beyond max_attempts" if untried else ""
        super().__init__(f"every upstream attempt failed ({tried or 'none tried'}){more}")
        self.attempts = list(attempts)
        self.untried = untried


def quoted(value: str, limit: int = 80) -> str:
    """A caller's string as an error quotes it: repr'd and cut to `limit` characters, so a
    5,000-character name is not echoed back whole."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def unknown_models(snapshot, names, listing: str) -> str | None:
    """"unknown model(s) 'a' (did you mean ...?), 'b' (not in the registry: see LISTING)" for the
    `names` a registry snapshot does not know, each hint right after its name; None when it knows all.
    `listing`: what lists the models, in the front end's terms. Hints for the first 3 only: a bounded look."""
    unknown = [n for n in names if n not in snapshot]
    if not unknown:
        return None
    named = ", ".join(quoted(n) + (snapshot.did_you_mean(n) if i < 3 else "") for i, n in enumerate(unknown))
    return f"unknown model(s) {named} (not in the registry: see {listing})"


def registry_issues(exc: RegistryError) -> list[dict]:
    return [{"message": i.message, "file": i.file.name if i.file is not None else None,
             "model": i.model, "field": i.field, "line": i.line} for i in exc.errors]


def _facts(exc: PickwiseError) -> dict[str, Any]:
    """The structured facts a caller can act on, by kind of error."""
    if isinstance(exc, RequestFieldError):
        return {"errors": [{"loc": ["body", *exc.field.split(".")], "msg": exc.message, "type": "value_error"}]}
    if isinstance(exc, InfeasibleSelection):
        return {"blocking": exc.blocking, "way_out": getattr(exc, "way_out", {}),
                "way_out_together": getattr(exc, "way_out_together", {})}
    if isinstance(exc, BudgetInfeasible):
        return {"reason": exc.reason, "budget": exc.budget, "min_budget": exc.min_budget}
    if isinstance(exc, PlanInfeasible):
        return {"reason": exc.reason}
    if isinstance(exc, RegistryError):
        return {"errors": registry_issues(exc)}
    if isinstance(exc, (ModelNotServed, InvalidParameter, OutsideLimits)):
        return {"param": exc.param}
    if isinstance(exc, AllAttemptsFailed):
        return {"attempts": [{"model": a.model, "outcome": a.outcome, "seconds": round(a.seconds, 4)}
                             for a in exc.attempts]}
    return {}


# Ordered: the first class an error is an instance of gives its code (subclasses before bases).
ERROR_CODES: tuple[tuple[type[PickwiseError], str], ...] = (
    (NotReady, "not_ready"),
    (ModelNotFound, "not_found"),
    (ModelNotServed, "model_not_found"),
    (InvalidParameter, "invalid_parameter"),
    (OutsideLimits, "outside_limits"),
    (GatewayBusy, "overloaded"),
    (AllAttemptsFailed, "upstream_failed"),
    (DecisionNotFound, "not_found"),
    (RequestFieldError, "validation_error"),
    (SelectorInputError, "validation_error"),
    (InfeasibleSelection, "infeasible"),
    (PlanInfeasible, "plan_infeasible"),
    (RegistryConflict, "conflict"),
    (RegistryError, "invalid_model"),
    (StoreUnavailable, "store_unavailable"),
)


def error_code(exc: PickwiseError) -> str:
    return next((code for kind, code in ERROR_CODES if isinstance(exc, kind)), "error")


def error_body(exc: PickwiseError) -> dict[str, Any]:
    """`{"error", "detail", ...}` for a domain error; the service adds request facts in `exc.context`."""
    return {"error": error_code(exc), "detail": str(exc), **_facts(exc), **exc.context}


class PlanCancelled(PickwiseError):
    """A plan job was cancelled while its prompts were being encoded: the plan stops there."""
