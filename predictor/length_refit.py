"""Refit output-length vectors to the stored outcomes' answer lengths (`pickwise fit`, beside quality).

Each model with outcome lengths (the `output_tokens` of its outcomes on the fit side) gets a MAP fit
of its length vector (`predictor.lengths`), centred on what it had, as its quality vector is:
- a trained vector: with `trust_trained` times the population's precision (it stands for thousands
  of table answers); a vector from an earlier refit: with the population's precision;
- a fit to its probe answers' lengths: those and the outcome lengths fitted together, under the
  population prior of the probe prompts' tables;
- nothing (its registry `expected_output_tokens`): the population prior.
The more lengths, the less the centre weighs. Models without outcome lengths keep what they had.

The held-out outcomes that have lengths score base and candidate: median |log2 error| of the count
select prices with, and the share within a factor of 2.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pickwise.predictor.lengths import has_options, log2_tokens

if TYPE_CHECKING:
    from pickwise.predictor.refit import Features, OutcomeRows


@dataclass
class LengthRefit:
    """What the length refit did: {model: {"vector": LengthVector, "rows", "prompts", "before"}}, or why it did not."""

    fitted: dict[str, dict] = field(default_factory=dict)
    rows_with_tokens: int = 0
    fit_rows: int = 0
    held_out_rows: int = 0
    skipped: str | None = None

    def vectors(self) -> dict:
        return {name: f["vector"] for name, f in self.fitted.items()}

    def rows(self) -> dict[str, int]:
        return {name: f["rows"] for name, f in self.fitted.items()}

    def report(self) -> dict:
        """For the artifact's refit metadata: counts per model, never the vectors."""
        out = {"outcomes_with_tokens": {"used": self.rows_with_tokens, "fit": self.fit_rows,
                                        "held_out": self.held_out_rows},
               "models": {m: {k: v for k, v in f.items() if k != "vector"} for m, f in self.fitted.items()}}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


def refit_lengths(predictor, snapshot, rows: OutcomeRows, features: Features, held: np.ndarray,
                  trust_trained: float = 10.0) -> LengthRefit:
    """Fit the length vector of every model with outcome lengths among the rows not `held` out."""
    from pickwise.predictor.inference import probe_lengths

    has = np.isfinite(rows.tokens)
    result = LengthRefit(rows_with_tokens=int(has.sum()), fit_rows=int((has & ~held).sum()),
                         held_out_rows=int((has & held).sum()))
    if predictor.lengths is None:
        if has.any():
            result.skipped = "the base artifact has no length model (output_lengths.npz): lengths are not refitted"
        return result
    by_model: dict[str, list[int]] = defaultdict(list)
    for i in np.flatnonzero(has & ~held):
        by_model[rows.models[i]].append(int(i))
    for name, idx in sorted(by_model.items()):
        spec = snapshot.get(name)
        u = np.stack([features.u[rows.shas[i]] for i in idx])
        tokens = rows.tokens[idx]
        current = predictor.length_vector(spec, snapshot)
        before = current.source if current is not None else "registry"
        if before == "probe":
            vector = predictor.fit_probe_lengths(spec, probe_lengths(spec, snapshot), u, tokens, source="outcomes")
        else:
            vector = predictor.lengths.fit(u, tokens, None, spec.name, center=current, source="outcomes",
                                           trust=trust_trained if before == "trained" else 1.0)
        result.fitted[name] = {"vector": vector, "rows": len(idx), "prompts": len({rows.shas[i] for i in idx}),
                               "before": before}
    return result


def length_figures(base, candidate, snapshot, rows: OutcomeRows, features: Features, held: np.ndarray) -> dict:
    """Median |log2 error| and share within 2x of the counts base and candidate price held-out outcomes with,
    against the lengths those outcomes had; overall and per model."""
    from pickwise.predictor.refit import held_out_grid, paired_difference

    idx = np.flatnonzero(held & np.isfinite(rows.tokens))
    if not len(idx):
        return {"rows": 0}
    grid = held_out_grid(snapshot, rows, features, idx)
    u, tasks, pooled, specs, r, c = grid.u, grid.tasks, grid.pooled, grid.specs, grid.r, grid.c
    truth = log2_tokens(rows.tokens[idx])
    errors = {}
    options = has_options([rows.texts.get(sha, "") for sha in grid.prompts])  # a prompt kept as a hash: no letters
    for label, predictor in (("base", base), ("candidate", candidate)):
        open_ended = predictor.evidence(u, [], tasks, pooled=pooled).open_ended if tasks is not None else None
        tokens, _ = predictor.output_tokens(u, specs, open_ended, snapshot, tasks, options=options)
        errors[label] = np.abs(log2_tokens(tokens[r, c]) - truth)
    return {
        "rows": int(len(idx)), "prompts": len(grid.prompts),
        "median_abs_log2_error": {k: float(np.median(e)) for k, e in errors.items()},
        # the promotion gate's figure: a mean, whose paired difference resamples as Brier's does
        "mean_abs_log2_error": {**{k: float(np.mean(e)) for k, e in errors.items()},
                                "difference": paired_difference(errors["base"], errors["candidate"], r,
                                                                len(grid.prompts))},
        "within_2x": {k: float(np.mean(e <= 1.0)) for k, e in errors.items()},
        "per_model": {m: {"rows": int((c == j).sum()),
                          **{k: float(np.median(e[c == j])) for k, e in errors.items()}} for j, m in enumerate(grid.names)},
    }
