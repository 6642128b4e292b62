"""The way out of an infeasible select (pickwise.api.way_out), on candidates as the selector gets them."""
from __future__ import annotations

from pickwise.api.way_out import describe, way_out
from pickwise.selector.types import Candidate, SelectionConstraints


def cand(name, q, cost, lat=100.0, **kw):
    return Candidate(name=name, quality=q, cost_usd=cost, latency_ms=lat, **kw)


def test_a_fallback_held_back_only_by_the_base_model_rule_is_told_to_allow_base_models():
    # the QA case: a base model asked for by name, an open-ended prompt, a floor it misses: the floor
    # alone a fallback would break, so allowing base models alone is what lets it answer
    pool = [cand("base", 0.2, 0.0001, open_ended_base=True)]
    cons = SelectionConstraints(min_quality=0.5, on_infeasible="cheapest")
    assert way_out(pool, cons) == {"allow_base_models": True}
    assert way_out(pool, cons.model_copy(update={"on_infeasible": "error"})) == {}  # without a fallback: both needed
    text = describe({"base": ["base model, open-ended prompt", "quality floor"]}, way_out(pool, cons), "cheapest")
    assert text.endswith("no model passes the hard constraints for fallback 'cheapest'; way out: allow_base_models true")
