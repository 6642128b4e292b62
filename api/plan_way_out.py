"""Why a plan's prompts have no model, where the cause is a rule the request can lift: the
low-confidence rule (under a floor, a quality needs evidence) and the base-model rule (open-ended
prompts go to instruction-tuned models). Found by asking the selector again with the rule lifted,
as select's way out is (api.way_out), so the 409 names the switch that helps and no other.
Prompts too long for every candidate are told too (no switch lifts that: the 409 only says so).
"""
from __future__ import annotations

import numpy as np

from pickwise.selector.batch import unserved_rows
from pickwise.selector.errors import PlanInfeasible
from pickwise.selector.workload import Workload

# request field -> why it held the prompts back and what it does, as the 409 says it
_WHY = {
    "allow_low_confidence": "for low confidence: the qualities that meet the floor there have no evidence behind "
                            "them (no results on prompts like these, or a prompt the encoder cannot read); "
                            "allow_low_confidence: true or --allow-low-confidence lets such qualities meet the floor",
    "allow_base_models": "for the base-model rule: they read as open-ended, and base models (not instruction-tuned) "
                         "do not take those; allow_base_models: true or --allow-base-models lets them",
    "too_long": "for length: with its expected answer the prompt is longer than every candidate's context window, "
                "or the answer than its max_output_tokens (expected_output_tokens or --expected-output-tokens sets "
                "the answer's length)",
}
LIFTABLE = ("allow_low_confidence", "allow_base_models")  # the request fields `way_out` may name


def held_back(workload: Workload, held: dict[str, np.ndarray], *, min_quality=None,
              max_latency_ms=None) -> dict[str, list[int]]:
    """{request field: the prompts (rows) with no model that lifting the rules gives one, among those
    this field's rule removed a model from}. `held`: per field, the [N, M] entries its rule removed from
    `workload.allowed` (the qualities not yet zeroed); only asked when a rule removed something."""
    if not any(mask.any() for mask in held.values()):
        return {}
    limits = {"min_quality": min_quality, "latency": workload.latency_ms, "max_latency_ms": max_latency_ms}
    stuck = unserved_rows(workload.quality, allowed=workload.allowed, **limits)
    if not stuck.size:
        return {}
    lifted = workload.allowed | np.logical_or.reduce(list(held.values()))
    freed = np.setdiff1d(stuck, unserved_rows(workload.quality, allowed=lifted, **limits))
    return {field: [int(i) for i in freed if mask[i].any()] for field, mask in held.items() if mask[freed].any()}


def plan_way_out(exc: PlanInfeasible, set_aside: dict[str, list[int]]) -> PlanInfeasible:
    """`exc` itself, or, where rules the request can lift left some of its prompts with no model, the
    same refusal saying so, with `way_out` ({field: true}) in its context."""
    rows = set(exc.rows)
    counts = {field: len(rows.intersection(held)) for field, held in set_aside.items()}
    counts = {field: k for field, k in counts.items() if k}
    if exc.reason != "no allowed model" or not counts:
        return exc
    why = "; ".join(f"{k} of them {_WHY[field]}" for field, k in counts.items())
    told = PlanInfeasible(exc.reason, f"{exc} ({why})", rows=exc.rows)
    way_out = {field: True for field in counts if field in LIFTABLE}
    return told.add_context(**exc.context, **({"way_out": way_out} if way_out else {}))
