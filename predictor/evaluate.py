"""`pickwise eval`: score the predictor and the baselines on the rows it never trained on.

Only the predictor's "test" rows of a table are scored (rows of a table it never saw are all
"test"). The baselines are trained here, on the same table's "train" rows, so the comparison
is on identical held-out prompts; "val" rows are used by nobody here.
"""
from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from pickwise.predictor.baselines import BASELINES
from pickwise.predictor.data import RoutingTable
from pickwise.predictor.routing_metrics import TableFigures, routing_figures
from pickwise.registry import UnknownModelError, estimate_cost_usd

PICKWISE = "pickwise"


class EvaluablePredictor(Protocol):
    """What eval needs from a predictor (the artifact loaded by `predictor.load_predictor`)."""

    version: str

    def row_split(self, table: RoutingTable) -> np.ndarray: ...

    def predict(self, prompts: list[str], models: list[str], progress: bool = False) -> np.ndarray: ...


class TableReport(BaseModel):
    """Everything `pickwise eval` found on one table; JSON-serialisable (`model_dump_json`)."""

    table: str
    path: str
    sha256: str
    predictor_version: str
    predictor_precision: str = "fp32"  # how its encoder ran (`load_predictor(precision=...)`)
    cost_estimate: str  # how ĉ (the cost the routers decide with) was obtained
    n_train: int  # rows the baselines were trained on
    n_test: int  # held-out rows scored
    figures: TableFigures


def registry_cost_estimate(table: RoutingTable, snapshot: Any) -> np.ndarray:
    """[N, M] estimated USD per (prompt, model) from the registry's prices.

    ĉ = prompt tokens x input price + expected output tokens x output price + per-request fee.
    Where the table's realised cost is input-only (LLMRouter: output unknown) ĉ is input-only
    too, in_tokens x input price, so decisions and scores count the same thing.
    """
    c_hat = np.empty((len(table), len(table.model_names)))
    tokens = table.in_tokens
    if not np.all(np.isfinite(tokens)):
        raise ValueError(f"{table.path}: 'in_tokens' is missing or NaN; cannot estimate cost")
    for m, name in enumerate(table.model_names):
        try:
            spec = snapshot.get(name)
        except UnknownModelError as exc:
            raise ValueError(f"{table.path}: model '{name}' of the table is not in the registry "
                             f"({exc}); add it or pass --cost-estimate table") from None
        if table.cost_is_input_only:
            c_hat[:, m] = tokens * spec.pricing.input_per_million / 1e6
        else:
            c_hat[:, m] = [estimate_cost_usd(spec, int(t)) for t in tokens]
    return c_hat


def fitted_cost_estimate(table: RoutingTable, train_rows: np.ndarray) -> np.ndarray:
    """[N, M] estimated cost from prices fitted to the table's own training rows (no registry needed).

    Per model, a non-negative least-squares fit of realised cost on (prompt tokens, output
    tokens) gives the two per-token prices; ĉ = in_tokens x p_in + mean training output tokens
    x p_out. Without output-token counts the fit is on (prompt tokens, 1): the constant
    absorbs the typical answer. Only training rows are used, so nothing leaks from the test labels.
    """
    from scipy.optimize import nnls

    train = np.flatnonzero(train_rows) if np.asarray(train_rows).dtype == bool else np.asarray(train_rows)
    c_hat = np.empty((len(table), len(table.model_names)))
    for m, name in enumerate(table.model_names):
        cost = table.cost[train, m]
        tin = table.in_tokens[train]
        tout = None if table.out_tokens is None else table.out_tokens[train, m]
        ok = np.isfinite(cost) & np.isfinite(tin) & (True if tout is None else np.isfinite(tout))
        if ok.sum() < 2:
            raise ValueError(f"{table.path}: model '{name}' has fewer than 2 training rows with a cost; "
                             "cannot fit its prices")
        second = np.ones(ok.sum()) if tout is None or table.cost_is_input_only else tout[ok]
        (p_in, p_second), _ = nnls(np.column_stack([tin[ok], second]), cost[ok])
        typical = 1.0 if tout is None or table.cost_is_input_only else float(tout[ok].mean())
        c_hat[:, m] = table.in_tokens * p_in + typical * p_second
    return c_hat


def evaluate_table(
    table: RoutingTable,
    predictor: EvaluablePredictor,
    snapshot: Any | None,
    *,
    baselines: tuple[str, ...] = ("prior", "tfidf"),
    bootstrap: int = 200,
    seed: int = 0,
    c_hat: np.ndarray | None = None,
    baseline_factories: dict[str, Any] | None = None,
    progress: bool = False,
) -> TableReport:
    """Score `predictor` and the `baselines` on the table's held-out rows.

    ĉ comes from `c_hat` if given (tests), else from the registry `snapshot`, else (snapshot
    None) from prices fitted to the training rows. `baseline_factories` maps a baseline name to
    a zero-argument constructor (default: `baselines.BASELINES`), e.g. to pass the embedding
    baseline a small backbone.
    """
    factories = {**BASELINES, **(baseline_factories or {})}
    unknown = [b for b in baselines if b not in factories]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {sorted(factories)}")
    if np.all(np.isnan(table.cost)):
        raise ValueError(f"{table.path}: the table has no realised costs; routing figures need them")
    split = np.asarray(predictor.row_split(table))
    if split.shape != (len(table),):
        raise ValueError(f"predictor.row_split returned shape {split.shape} for {len(table)} rows")
    test, train = split == "test", split == "train"
    if not test.any():
        raise ValueError(f"{table.path}: the predictor trained on every row; no held-out rows to score")

    if c_hat is not None:
        c_hat_source = "given"
    elif snapshot is not None:
        c_hat = registry_cost_estimate(table, snapshot)
        c_hat_source = f"registry {getattr(snapshot, 'directory', '')} (version {getattr(snapshot, 'version', '?')})"
    else:
        c_hat = fitted_cost_estimate(table, train)
        c_hat_source = "prices fitted (NNLS) to the table's training rows"
    if table.cost_is_input_only:
        c_hat_source += "; input-only (realised cost is prompt tokens x input price)"
    c_hat = np.asarray(c_hat, dtype=np.float64)
    if c_hat.shape != table.quality.shape:
        raise ValueError(f"c_hat shape {c_hat.shape} differs from the table's {table.quality.shape}")

    held_out = table.subset(test)
    predictions = {PICKWISE: np.asarray(predictor.predict(held_out.prompts, held_out.model_names,
                                                          progress=progress), dtype=np.float64)}
    if predictions[PICKWISE].shape != held_out.quality.shape:
        raise ValueError(f"predictor returned shape {predictions[PICKWISE].shape}, "
                         f"expected {held_out.quality.shape}")
    if baselines and not train.any():
        raise ValueError(f"{table.path}: the predictor has no training rows in this table; "
                         "baselines need some (evaluate without baselines)")
    trained = table.subset(train)
    for name in baselines:
        model = factories[name]().fit(trained.prompts, trained.quality)
        predictions[name] = np.asarray(model.predict(held_out.prompts), dtype=np.float64)

    figures = routing_figures(
        held_out.quality, held_out.cost, c_hat[test], predictions, held_out.model_names,
        reference=PICKWISE, n_bootstrap=bootstrap, seed=seed,
    )
    return TableReport(
        table=table.name,
        path=str(table.path),
        sha256=table.sha256,
        predictor_version=str(getattr(predictor, "version", "unknown")),
        predictor_precision=str(getattr(predictor, "precision", "fp32")),
        cost_estimate=c_hat_source,
        n_train=int(train.sum()),
        n_test=int(test.sum()),
        figures=figures,
    )


# ----------------------------------------------------------------------------- text output


def _fmt(x: float | None, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def _fmt_c2m(x: float | None) -> str:
    return "∞" if x is None else f"{x:.2f}"  # None in the figures means "never matches the best model"


def format_report(reports: list[TableReport]) -> str:
    """A fixed-width table per report: one line per router, the bootstrap intervals, then notes."""
    lines: list[str] = []
    header = (f"{'router':<10} {'AIQ':>7} {'capture':>8} {'95% CI':>15} {'Δ vs pickwise 95% CI':>22} "
              f"{'c2m':>6} {'gain@best':>9} {'Brier':>6} {'ECE':>6} {'APGR':>6} {'CPT50':>6}")
    for rep in reports:
        fig = rep.figures
        best = fig.best_model
        lines.append(f"== {rep.table}  (held-out prompts: {fig.n_prompts}, baselines trained on {rep.n_train}; "
                     f"predictor {rep.predictor_version}, {rep.predictor_precision})")
        lines.append(f"   best single model: {best.name}  quality {_fmt(best.quality)}  "
                     f"mean cost ${_fmt(best.cost, '.3g')}   c_max ${fig.c_max:.3g}")
        lines.append(f"   APGR/CPT slice: {fig.strong_weak[0]} vs {fig.strong_weak[1]};  ĉ: {rep.cost_estimate}")
        lines.append(header)
        lines.append("-" * len(header))
        for name, r in fig.routers.items():
            ci = r.capture_bootstrap
            ci_text = f"[{_fmt(ci.lo)}, {_fmt(ci.hi)}]" if ci and ci.n else ""
            d = r.capture_diff_bootstrap
            d_text = f"{_fmt(d.mean, '+.3f')} [{_fmt(d.lo, '+.3f')}, {_fmt(d.hi, '+.3f')}]" if d and d.n else ""
            lines.append(
                f"{name:<10} {r.aiq:>7.4f} {_fmt(r.capture):>8} {ci_text:>15} {d_text:>22} "
                f"{_fmt_c2m(r.c2m):>6} {r.gain_at_best_cost:>+9.4f} {_fmt(r.brier):>6} "
                f"{_fmt(r.ece):>6} {_fmt(r.apgr):>6} {_fmt(r.cpt50):>6}"
            )
        for note in fig.notes:
            lines.append(f"   note: {note}")
        lines.append("")
    lines.append("capture: share of the oracle's AIQ headroom over the zero router (bootstrap over prompts, "
                 "paired); Δ = pickwise − router; c2m ∞ = never matches the best single model.")
    return "\n".join(lines)
