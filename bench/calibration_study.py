"""Would per-model calibration, or mixing in TF-IDF, beat the shipped single temperature? Validation rows only.

Why: the shipped predictor is calibrated by one temperature T, and on MMLU-57+GSM8K its held-out
Brier is a hair above TF-IDF's. Two cheap fixes need no retraining, so they are judged here
before anything is built:
- MT: a temperature per model, T_m = T exp(d_m), with an L2 penalty on d;
- MP: Platt scaling per model, sigmoid(a_m z / T + c_m), L2 penalty on (a_m - 1, c_m);
- B / BT: a logistic blend  w1 z / T + w2 logit(q_tfidf) + w0  of the predictor's and the TF-IDF
  router's logits, one (w0, w1, w2) for all tables (B) or one per table (BT). TF-IDF is trained on
  each table's training rows, as `pickwise eval` trains it.
Everything is fitted and scored on the artifact's validation rows by 2-fold cross-fitting (fit on
half of the prompts, score the other half, swap), so no figure is in-sample and the held-out test
rows stay unused; G is the single temperature refitted the same way. The penalties of MT and MP
are chosen by an inner 2-fold split of the fitting half. Routing figures: predictor.metrics.

Run: .venv/bin/python -m bench.calibration_study [--artifact DIR] [--name calibration_study]
Writes bench/results/<name>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.compare_artifacts import PRICED_TABLES  # noqa: E402
from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.baselines import TfidfLogisticRouter  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.evaluate import registry_cost_estimate  # noqa: E402
from pickwise.predictor.inference import load_predictor  # noqa: E402
from pickwise.predictor.routing_metrics import brier, ece, routing_figures  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402

PENALTIES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)  # L2 strengths tried for MT and MP (sum-BCE units)
METHODS = ("G", "MT", "MP", "B", "BT")


def validation_rows(predictor, snapshot) -> dict[str, dict]:
    """Per priced table, on its validation rows: logits z/T [N, M], TF-IDF logits, labels, costs, model indices."""
    out = {}
    for stem in PRICED_TABLES:
        table = load_table(default_data_dir() / f"{stem}.parquet")
        split = predictor.row_split(table)
        rows = split == "val"
        val, train = table.subset(rows), table.subset(split == "train")
        u, _ = predictor.prompt_vectors(val.prompts)
        vectors = [predictor.model_vector(m) for m in table.model_names]
        z = u.astype(np.float64) @ np.stack([v.vector for v in vectors]).T + np.array([v.bias for v in vectors])
        q_tfidf = np.clip(TfidfLogisticRouter().fit(train.prompts, train.quality).predict(val.prompts), 1e-4, 1 - 1e-4)
        out[stem] = {"z": z / predictor.temperature, "tfidf": np.log(q_tfidf / (1 - q_tfidf)),
                     "quality": val.quality, "cost": val.cost, "c_hat": registry_cost_estimate(table, snapshot)[rows],
                     "model": np.array([predictor.trained_index(m) for m in table.model_names])}
    return out


def observed(data: dict, rows: dict[str, np.ndarray], tables) -> tuple[np.ndarray, ...]:
    """The (z, tfidf logit, label, model index, table index) of every observed pair in `rows`, flattened."""
    parts = []
    for k, t in enumerate(tables):
        d, r = data[t], rows[t]
        y = d["quality"][r]
        ok = np.isfinite(y)
        parts.append((d["z"][r][ok], d["tfidf"][r][ok], y[ok],
                      np.broadcast_to(d["model"], y.shape)[ok], np.full(ok.sum(), k)))
    return tuple(np.concatenate(p) for p in zip(*parts))


def fit_scaling(method: str, z, y, m, n_models: int, penalty: float) -> dict:
    """G: one extra scale s (logit = s z); MT: s exp(-d_m); MP: s a_m z + c_m. Penalised sum-BCE, LBFGS."""
    z_t, y_t, m_t = (torch.as_tensor(a) for a in (z, y, m))
    log_s = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    d = torch.zeros(n_models, dtype=torch.float64, requires_grad=method != "G")
    c = torch.zeros(n_models, dtype=torch.float64, requires_grad=method == "MP")
    params = [log_s] + ([d] if method != "G" else []) + ([c] if method == "MP" else [])
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logit = z_t * log_s.exp() * torch.exp(-d[m_t]) + c[m_t]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y_t, reduction="sum")
        loss = loss + penalty * ((d ** 2).sum() + (c ** 2).sum())
        loss.backward()
        return loss

    opt.step(closure)
    return {"s": float(log_s.detach().exp()), "d": d.detach().numpy(), "c": c.detach().numpy()}


def apply_scaling(p: dict, z: np.ndarray, model: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(z * p["s"] * np.exp(-p["d"][model]) + p["c"][model])))


def fit_blend(z, t, y) -> np.ndarray:
    """(w0, w1, w2) of sigmoid(w0 + w1 z + w2 t) by maximum likelihood (soft labels allowed)."""
    x = np.stack([np.ones_like(z), z, t], axis=1)

    def nll(w):
        s = x @ w
        return np.sum(np.logaddexp(0, s) - y * s), x.T @ (1 / (1 + np.exp(-s)) - y)

    return minimize(nll, np.array([0.0, 1.0, 0.0]), jac=True, method="L-BFGS-B").x


def halves(rows: dict[str, np.ndarray], seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    first, second = {}, {}
    for t, r in rows.items():
        perm = rng.permutation(r)
        first[t], second[t] = np.sort(perm[: len(r) // 2]), np.sort(perm[len(r) // 2 :])
    return first, second


def chosen_penalty(method: str, data: dict, rows: dict, tables, n_models: int) -> float:
    """The penalty with the lowest inner cross-fitted log loss on `rows`."""
    a, b = halves(rows, seed=1)
    losses = []
    for penalty in PENALTIES:
        total = 0.0
        for fit_rows, score_rows in ((a, b), (b, a)):
            z, _, y, m, _ = observed(data, fit_rows, tables)
            params = fit_scaling(method, z, y, m, n_models, penalty)
            z, _, y, m, _ = observed(data, score_rows, tables)
            p = np.clip(apply_scaling(params, z, m), 1e-7, 1 - 1e-7)
            total -= float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
        losses.append(total)
    return PENALTIES[int(np.argmin(losses))]


def cross_fitted(data: dict, n_models: int) -> tuple[dict, dict]:
    """Every method's validation probabilities, each half scored by a fit on the other; and the penalties."""
    tables = list(data)
    rows = {t: np.arange(len(data[t]["z"])) for t in tables}
    out = {meth: {t: np.full(data[t]["z"].shape, np.nan) for t in tables} for meth in METHODS}
    penalties: dict[str, list[float]] = {"MT": [], "MP": []}
    first, second = halves(rows, seed=0)
    for fit_rows, score_rows in ((first, second), (second, first)):
        z, tf, y, m, k = observed(data, fit_rows, tables)
        scalings = {"G": fit_scaling("G", z, y, m, n_models, 0.0)}
        for meth in ("MT", "MP"):
            penalties[meth].append(chosen_penalty(meth, data, fit_rows, tables, n_models))
            scalings[meth] = fit_scaling(meth, z, y, m, n_models, penalties[meth][-1])
        blend = fit_blend(z, tf, y)
        for j, t in enumerate(tables):
            d, r = data[t], score_rows[t]
            for meth, params in scalings.items():
                out[meth][t][r] = apply_scaling(params, d["z"][r], d["model"])
            per_table = fit_blend(z[k == j], tf[k == j], y[k == j])
            for meth, w in (("B", blend), ("BT", per_table)):
                out[meth][t][r] = 1 / (1 + np.exp(-(w[0] + w[1] * d["z"][r] + w[2] * d["tfidf"][r])))
    return out, penalties


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", default=str(default_artifact_dir()))
    parser.add_argument("--precision", default="bf16", help="encoder precision for the validation logits")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--name", default="calibration_study", help="results file stem under bench/results")
    args = parser.parse_args()
    torch.set_num_threads(2)
    predictor = load_predictor(args.artifact, "cpu", precision=args.precision)
    data = validation_rows(predictor, load_registry(default_registry_dir()))
    predictions, penalties = cross_fitted(data, len(predictor.model_names))
    results = {}
    for t, d in data.items():
        routers = {meth: predictions[meth][t] for meth in METHODS}
        routers["tfidf"] = 1 / (1 + np.exp(-d["tfidf"]))
        figures = routing_figures(d["quality"], d["cost"], d["c_hat"], routers, [str(j) for j in d["model"]],
                                  reference="G", n_bootstrap=args.bootstrap)
        results[t] = {"prompts": len(d["z"]), "routers": {}}
        for name, q in routers.items():
            f, diff = figures.routers[name], figures.routers[name].capture_diff_bootstrap
            results[t]["routers"][name] = {"brier": brier(q, d["quality"]), "ece": ece(q, d["quality"]),
                                           "capture": f.capture,
                                           "G_minus_this": None if name == "G" else [diff.lo, diff.hi]}
    mean_brier = {name: float(np.mean([results[t]["routers"][name]["brier"] for t in data]))
                  for name in [*METHODS, "tfidf"]}
    report = {"artifact": args.artifact, "precision": args.precision, "penalties": penalties,
              "mean_brier": mean_brier, "tables": results,
              "command": "python -m bench.calibration_study " + " ".join(sys.argv[1:])}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    lines = [f"Validation rows, 2-fold cross-fitted; capture in brackets: paired 95% interval of G − this "
             f"({args.bootstrap} resamples). Penalties chosen: MT {penalties['MT']}, MP {penalties['MP']}.", "",
             "| method | " + " | ".join(f"{PRICED_TABLES[t]} Brier / ECE / capture" for t in data) + " | mean Brier |",
             "|---" * (len(data) + 2) + "|"]
    for name in [*METHODS, "tfidf"]:
        cells = []
        for t in data:
            r = results[t]["routers"][name]
            ci = "" if r["G_minus_this"] is None else " [{:+.3f}, {:+.3f}]".format(*r["G_minus_this"])
            cells.append(f"{r['brier']:.4f} / {r['ece']:.3f} / {r['capture']:.3f}{ci}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean_brier[name]:.5f} |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
