"""The cheapest way out of an infeasible select: for each soft constraint the request set, the value
that alone would make it feasible, found by asking the selector itself with that constraint relaxed
(so sets, the common-mode failure share and the low-confidence rule count exactly as they do there).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from pickwise.registry import RegistrySnapshot
from pickwise.registry.schema import CAPABILITIES
from pickwise.selector.errors import InfeasibleSelection
from pickwise.selector.request import select_models
from pickwise.selector.types import Candidate, Decision, SelectionConstraints

NAMED = 5  # models named in a 409 as declaring what the call needs, the rest counted
WAY_OUT_FIELDS = ("min_quality", "max_cost_usd", "max_latency_ms", "allow_low_confidence", "allow_base_models")


def _decide(candidates: Sequence[Candidate], cons: SelectionConstraints, rho: float, **relaxed) -> Decision | None:
    """The decision with `relaxed` changed, or None when it is still refused. The request's own
    `on_infeasible` is kept: a fallback is refused only when no model passes the hard constraints, so
    what answers it is a change to those (allow_base_models), not to a soft one the fallback breaks anyway."""
    try:
        return select_models(candidates, cons.model_copy(update=relaxed), set_rho=rho)
    except InfeasibleSelection:
        return None


def _highest_floor(candidates: Sequence[Candidate], cons: SelectionConstraints, rho: float, **relaxed) -> float:
    """The best quality reachable with no floor (other constraints kept), rounded down to 3 decimals: the
    highest min_quality that admits it; 0 when nothing is feasible."""
    best = _decide(candidates, cons, rho, min_quality=None, objective="max_quality", willingness_to_pay=None,
                   **relaxed)
    return math.floor(best.quality * 1000) / 1000 if best is not None else 0.0


def _round_up(value: float) -> float:
    """`value` rounded up to 3 significant digits (a cap that admits it)."""
    if value <= 0:
        return 0.0
    step = 10.0 ** (math.floor(math.log10(value)) - 2)
    return float(f"{math.ceil(round(value / step, 6)) * step:.3g}")


def _shorter_answer(candidates: Sequence[Candidate], cons: SelectionConstraints, rho: float,
                    refigure: Callable[[int], Sequence[Candidate]]) -> int | None:
    """The longest answer some model takes (its output room after the prompt) under which the request
    is feasible, trying the longest first; None when no shorter answer helps. Shorter answers only
    cost and wait less, so each room tried is the most that model allows."""
    asked = max(c.output_tokens or 0 for c in candidates)
    rooms = sorted({c.output_room for c in candidates if c.output_room is not None and 0 < c.output_room < asked},
                   reverse=True)
    return next((room for room in rooms if _decide(refigure(room), cons, rho) is not None), None)


def way_out(candidates: Sequence[Candidate], cons: SelectionConstraints, rho: float = 0.0,
            refigure: Callable[[int], Sequence[Candidate]] | None = None) -> dict[str, float | bool]:
    """{constraint: the value that alone makes the request feasible}, for the constraints it set.
    `refigure(n)`: the candidates with every answer n tokens long, for a request that set
    expected_output_tokens (None: it did not, or a cap on the answer decides what fits)."""
    out: dict[str, float | bool] = {}
    if cons.min_quality is not None:
        # what counts towards a floor: a quality without evidence counts as 0 unless the request allows it
        counted = [c if cons.allow_low_confidence or c.low_confidence is None
                   else c.model_copy(update={"quality": 0.0, "low_confidence": None}) for c in candidates]
        floor = _highest_floor(counted, cons, rho)
        if floor > 0:
            out["min_quality"] = floor
    if cons.max_cost_usd is not None:
        cheapest = _decide(candidates, cons, rho, max_cost_usd=None, objective="min_cost", willingness_to_pay=None)
        if cheapest is not None:
            out["max_cost_usd"] = _round_up(cheapest.cost_usd)
    if cons.max_latency_ms is not None and _decide(candidates, cons, rho, max_latency_ms=None) is not None:
        caps = sorted({math.ceil(c.latency_ms) for c in candidates if c.latency_ms > cons.max_latency_ms})
        low, high = 0, len(caps) - 1  # feasibility only grows with the cap: the smallest feasible one
        while low < high:
            mid = (low + high) // 2
            if _decide(candidates, cons, rho, max_latency_ms=float(caps[mid])) is not None:
                high = mid
            else:
                low = mid + 1
        if caps:
            out["max_latency_ms"] = float(caps[low])
    if cons.min_quality is not None and not cons.allow_low_confidence \
            and _decide(candidates, cons, rho, allow_low_confidence=True) is not None:
        out["allow_low_confidence"] = True
    if not cons.allow_base_models and any(c.open_ended_base for c in candidates) \
            and _decide(candidates, cons, rho, allow_base_models=True) is not None:
        out["allow_base_models"] = True
    if refigure is not None and not all(c.fits_context and c.fits_output for c in candidates):
        if (shorter := _shorter_answer(candidates, cons, rho, refigure)) is not None:
            out["expected_output_tokens"] = shorter
    return out


def way_out_together(candidates: Sequence[Candidate], cons: SelectionConstraints, rho: float = 0.0) -> dict[str, float | bool]:
    """Where no single change helps a floor that only low-confidence qualities come near (an open-ended
    prompt: every model is low-confidence): allow_low_confidence with the highest floor it then admits."""
    if cons.min_quality is None or cons.allow_low_confidence:
        return {}
    floor = _highest_floor(candidates, cons, rho, allow_low_confidence=True)
    if floor <= 0 or _decide(candidates, cons, rho, allow_low_confidence=True, min_quality=floor) is None:
        return {}
    return {"allow_low_confidence": True, "min_quality": floor}


def _options(ways: dict[str, float | bool], joiner: str) -> str:
    return joiner.join(f"{k} {str(v).lower() if isinstance(v, bool) else f'{v:g}'}" for k, v in ways.items())


def way_out_clause(ways: dict[str, float | bool], together: dict[str, float | bool] | None) -> str:
    """The end of `describe`'s sentence, "; way out: ..." in the HTTP fields' names ("" with no way
    out): the command line puts its own options in its place."""
    if ways:
        return "; way out: " + _options(ways, " or ")
    if together:
        return "; way out, both together: " + _options(together, " and ")
    return ""


def no_way_out_clause(fields: Sequence[str] = WAY_OUT_FIELDS) -> str:
    """The end of `describe`'s sentence when no single change helps (`fields` as a front end names them)."""
    return f"; no single change of {', '.join(fields[:-1])} or {fields[-1]} helps"


def declared_elsewhere(snapshot: RegistrySnapshot, blocking: dict[str, list[str]]) -> dict[str, list[str]]:
    """{capability: the registry's models declaring it that are not among `blocking`'s}: those a call
    needing it could not go to (an allow-list, disabled, no endpoint, a server's limits)."""
    inside = {snapshot.get(n).name for n in blocking if n in snapshot}
    return {c: [s.name for s in snapshot.models if c in s.capabilities and s.name not in inside] for c in CAPABILITIES}


def nothing_satisfies(blocking: dict[str, list[str]]) -> str:
    """The head of every 409's message: how many models each constraint rules out."""
    counts = Counter(reason for why in blocking.values() for reason in (why or ["no feasible set"]))
    ruled = ", ".join(f"{reason} {n}" for reason, n in counts.most_common())
    return f"no model satisfies the constraints ({len(blocking)} models; ruled out by {ruled})"


def describe(blocking: dict[str, list[str]], ways: dict[str, float | bool], fallback: str = "error",
             together: dict[str, float | bool] | None = None, unreadable: bool = False,
             elsewhere: dict[str, list[str]] | None = None) -> str:
    """One sentence: how many models each constraint rules out (and, for a prompt the encoder cannot
    read, why every quality is low-confidence), then the way out. `elsewhere` (`declared_elsewhere`):
    the models outside `blocking` that declare a capability none of them does."""
    counts = Counter(reason for why in blocking.values() for reason in (why or ["no feasible set"]))
    text = nothing_satisfies(blocking)
    if unreadable:
        text += ("; the predictor cannot read the prompt (mostly unknown tokens: emoji, or a script outside its "
                 "vocabulary), so every quality is a low-confidence guess")
    if fallback != "error":
        text += f"; no model passes the hard constraints for fallback '{fallback}'"
    lacking = [reason.removeprefix("lacks ") for reason in counts if reason.startswith("lacks ")
               and all(reason in why for why in blocking.values())]
    others = sorted({n for c in lacking for n in (elsewhere or {}).get(c, ())})
    if others:  # declared already, by models this call may not go to
        named = others[:NAMED] + ([f"{len(others) - NAMED} more"] if len(others) > NAMED else [])
        return text + (f"; the call needs {' and '.join(lacking)}, which no model here declares; "
                       f"{' and '.join([', '.join(named[:-1]), named[-1]] if len(named) > 1 else named)} "
                       f"declare{'s' if len(others) == 1 else ''} it, outside the models this call may go to")
    if lacking:  # no request option changes what a model can do: the registry entry must say it
        return text + (f"; the call needs {' and '.join(lacking)}, which no model here declares: list "
                       f"{'it' if len(lacking) == 1 else 'them'} under "
                       "`capabilities` in the registry entries of models whose endpoints support it")
    if ways or together:
        return text + way_out_clause(ways, together)
    return text + no_way_out_clause()
