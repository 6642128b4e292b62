"""Routing a chat request: which models, in which order, the gateway may forward it to.

`model: "pickwise/auto"` asks the service's decision path (`PickwiseService.decide`, the one
`/v1/select` takes) for a decision among the enabled models that have an endpoint, under the
request's `pickwise` options, and tries its ranking (`selector.ranking`). A registered name or
alias is forwarded to that model alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pickwise.api.errors import ModelNotServed, NoFeasibleModel, RequestFieldError, quoted
from pickwise.api.gateway.limits import LIMITS_ENV, GatewayLimits, broken_limits, ways_within
from pickwise.api.gateway.options import GatewayOptions
from pickwise.api.gateway.output_cap import OutputCap, fits_none
from pickwise.api.schemas import MAX_PROMPT_CHARS, SelectRequest
from pickwise.api.service import Encoded, PickwiseService
from pickwise.api.way_out import declared_elsewhere, describe, nothing_satisfies
from pickwise.registry import ModelSpec, RegistrySnapshot
from pickwise.registry.prompt_text import is_blank
from pickwise.selector import ranking
from pickwise.selector.request import HARD_REASONS
from pickwise.selector.sets import cost_limit, meets_floor

AUTO_MODEL = "pickwise/auto"
EMPTY_PROMPT = "(no text)"  # a conversation of images, tool calls or whitespace only: the predictor needs text


def served(snapshot: RegistrySnapshot) -> list[ModelSpec]:
    """The models the gateway can call: enabled, with an endpoint."""
    return [s for s in snapshot.models if s.enabled and s.endpoint is not None]


def check_served(names: list[str] | None, snapshot: RegistrySnapshot) -> None:
    """ValueError when an allow-list of the server's policy names models (known ones: `check_names` came
    first) of which the gateway can call none: every routed call that sends no list of its own would fail."""
    if not names or any(snapshot.get(n).name in {s.name for s in served(snapshot)} for n in names):
        return
    why = ", ".join(f"{n!r}: {'disabled' if not snapshot.get(n).enabled else 'no endpoint'}" for n in names)
    raise ValueError(f"models: the gateway can call none of them ({why}), so every routed call would be refused")


def for_registry(defaults: dict[str, Any], snapshot: RegistrySnapshot) -> dict[str, Any]:
    """The server's defaults as the registry stands now. `serve` checked their model names at startup,
    so a name the registry no longer holds (or no longer serves) was removed while serving: it excludes
    nothing, and leaves the allow-list while any of it is left, rather than refusing every call of
    clients that sent no options for the server's list."""
    out = dict(defaults)
    if out.get("exclude"):
        out["exclude"] = [n for n in out["exclude"] if n in snapshot]
    if out.get("models"):
        callable_ = {n for spec in served(snapshot) for n in spec.all_names()}
        left = [n for n in out["models"] if n in callable_]
        out["models"] = left or out["models"]  # none left: the request's 422 names them
    return out


def named_model(snapshot: RegistrySnapshot, name: str) -> ModelSpec:
    """The served model a request names (name or alias); ModelNotServed otherwise."""
    if name not in snapshot:  # a suggestion names what the gateway can call: following it must work
        hint = snapshot.did_you_mean(name, among=served(snapshot), extra=(AUTO_MODEL,))
        raise ModelNotServed(f"unknown model {quoted(name)}{hint}: GET /openai/v1/models "
                             f"lists the models served here, and {AUTO_MODEL!r} routes among them")
    spec = snapshot.get(name)
    if not spec.enabled:
        raise ModelNotServed(f"model {quoted(name)} is disabled in the registry")
    if spec.endpoint is None:
        raise ModelNotServed(f"model {quoted(name)} has no endpoint in the registry: the gateway cannot call it")
    return spec


def _pool(service: PickwiseService, snapshot: RegistrySnapshot, options: GatewayOptions) -> list[str]:
    """Registry names the decision may choose from: served, scorable, in the caller's allow-list."""
    left_out = service.scoring(snapshot).left_out
    pool = [s.name for s in served(snapshot) if s.name not in left_out]
    if options.models is not None:
        for name in options.models:
            if name not in snapshot:
                hint = snapshot.did_you_mean(name, among=served(snapshot))
                raise RequestFieldError("pickwise.models", f"unknown model {quoted(name)}{hint}")
            spec = snapshot.get(name)
            if spec.name not in pool:
                why = ("has no endpoint" if spec.endpoint is None else "is disabled" if not spec.enabled
                       else f"cannot be scored ({left_out.get(spec.name)})")
                raise RequestFieldError("pickwise.models", f"{quoted(name)} {why}: the gateway cannot route to it")
        wanted = {snapshot.get(n).name for n in options.models}
        pool = [n for n in pool if n in wanted]
    if not pool:
        raise ModelNotServed(f"no model the gateway can call: {AUTO_MODEL!r} routes among enabled models with an "
                             "endpoint in the registry, and there are none", param="model")
    return pool


def cut_prompt(prompt: str) -> str:
    """A prompt within MAX_PROMPT_CHARS, cut as the predictor cuts long prompts (head 40%, tail 60%), and
    EMPTY_PROMPT for one without text (SelectRequest refuses a blank prompt: the caller sent none)."""
    if is_blank(prompt):
        return EMPTY_PROMPT
    if len(prompt) <= MAX_PROMPT_CHARS:
        return prompt
    head = MAX_PROMPT_CHARS * 2 // 5
    return prompt[:head] + prompt[len(prompt) - (MAX_PROMPT_CHARS - head):]


def select_request(service: PickwiseService, snapshot: RegistrySnapshot, options: GatewayOptions,
                   prompt: str, needs: Sequence[str] = ()) -> SelectRequest:
    """The `/v1/select` request this chat request amounts to (its pool resolved to registry names), needing
    `needs` (`required_capabilities` of its body) beside what its options require."""
    fields = options.model_dump(exclude={"max_attempts"})
    fields["models"] = _pool(service, snapshot, options)
    fields["requires"] = list(dict.fromkeys([*options.requires, *needs]))
    return SelectRequest.model_validate({**fields, "prompt": cut_prompt(prompt)})


def _within(candidate, limits: GatewayLimits, allow_low_confidence: bool) -> bool:
    """Whether a candidate passes the hard constraints and its figures keep the limited caps and floor (as
    a fallback must); a quality without evidence counts toward the floor where the request allows it (and
    so the limits did)."""
    return (not any(reason in HARD_REASONS for reason in candidate.excluded_by)
            and (limits.max_cost_usd is None or candidate.cost_usd <= cost_limit(limits.max_cost_usd))
            and (limits.max_latency_ms is None or candidate.latency_ms <= limits.max_latency_ms)
            and (limits.min_quality is None or (bool(meets_floor(candidate.quality, limits.min_quality))
                                                and (allow_low_confidence or candidate.low_confidence is None))))


def _fallback_within(request: SelectRequest, decide, limits: GatewayLimits):
    """The decision, or, where it is an `on_infeasible` fallback breaking a limited cap or floor, the
    fallback chosen again among the models within the limits (NoFeasibleModel when there are none)."""
    decision = decide(request)
    broken = broken_limits(decision.violates, limits) if decision.fallback else []
    if not broken:
        return decision
    within = [c.name for c in decision.candidates
              if c.name in (request.models or ()) and _within(c, limits, request.allow_low_confidence)]
    if not within:
        blocking = {c.name: c.excluded_by for c in decision.candidates if c.name in (request.models or ())}
        raise NoFeasibleModel(blocking, {}, f"{nothing_satisfies(blocking)}, and no fallback "
                                            f"'{request.on_infeasible}' keeps the server's limits on "
                                            f"{', '.join(broken)} ({LIMITS_ENV})").add_context(fallback_limited=True)
    return decide(request.model_copy(update={"models": within}))


def _callable_or_not(elsewhere: dict[str, list[str]], snapshot: RegistrySnapshot) -> dict[str, list[str]]:
    """`declared_elsewhere`'s models, those without an endpoint marked so: no allow-list reaches them."""
    return {c: [n if snapshot.get(n).endpoint is not None else f"{n} (no endpoint)" for n in names]
            for c, names in elsewhere.items()}


def decide_route(service: PickwiseService, request: SelectRequest, encoded: Encoded, truncated: bool,
                 snapshot: RegistrySnapshot, prompt_tokens: int, cap: OutputCap | None = None, answers: int = 1,
                 limits: GatewayLimits | None = None):
    """(the decision, its ranking as specs) for one chat request, by the predictor that encoded its
    prompt, under the request's cap on each answer and priced for its `answers` (n), keeping the server's
    `limits` even in a fallback; runs in a worker thread."""
    def decide(select: SelectRequest):
        return service.decide(select, encoded.features, truncated, snapshot, prompt_tokens=prompt_tokens,
                              output_cap=None if cap is None else cap.tokens, answers=answers,
                              predictor=encoded.predictor)

    limits = limits or GatewayLimits()
    try:
        decision = _fallback_within(request, decide, limits)
    except NoFeasibleModel as exc:  # only the models the gateway could have called are of interest
        if exc.context.get("fallback_limited"):
            raise
        pool = set(request.models or ())
        blocking = {n: why for n, why in exc.blocking.items() if n in pool}
        too_long = None if cap is None else fits_none([snapshot.get(n) for n in request.models or ()], blocking,
                                                      cap, prompt_tokens)
        if too_long is not None:
            raise too_long from None
        ways, barred = ways_within(exc.way_out, limits)
        together, barred_together = ways_within(exc.way_out_together, limits)
        together = {} if barred_together else together  # a pair of changes helps only together
        message = describe(blocking, ways, request.on_infeasible, together, bool(exc.context.get("unreadable")),
                           _callable_or_not(declared_elsewhere(snapshot, blocking), snapshot))
        if barred or barred_together:
            message += (f" within the server's limits on {', '.join(dict.fromkeys([*barred, *barred_together]))} "
                        f"({LIMITS_ENV})")
        if cap is not None and any("context window" in why for why in blocking.values()):
            message += (f"; 'context window' counts the conversation's {prompt_tokens:,} prompt tokens plus "
                        f"{cap.field} {cap.tokens:,}")
        raise NoFeasibleModel(blocking, ways, message, together).add_context(**exc.context) from None
    except RequestFieldError as exc:
        if exc.field.startswith("pickwise."):
            raise
        raise RequestFieldError(f"pickwise.{exc.field}", exc.message) from None
    names = ranking(decision, request)
    return decision, [snapshot.get(n) for n in names]
