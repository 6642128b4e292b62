"""Cold start: route to models the predictor never trained on, from their probe results alone.

Setup: an artifact trained with some MMLU-Pro models held out entirely
(`pickwise train --exclude-models ...`). Each held-out model is then scored from its results on
the shipped probe set (the MMLU-Pro part of it: the model has no results elsewhere), exactly as
a user registering it by YAML would, and routing is measured on held-out MMLU-Pro prompts with
all 25 models present. Compared with:
- the default artifact, trained with those models included ("trained-in");
- TF-IDF + logistic regression trained with their full labels;
- the prior.
Capture is reported against the number of probe results used (random subsets, several seeds),
and, beyond the probe set, for fits from 220 (the probe set's size, drawn at random instead),
500, 2,000 and all of the held-out models' *training-row* labels (again means over random draws):
how far more results would go, and what the fixed encoder allows with all of them.

Run: .venv/bin/python -m bench.bench_coldstart --heldout-artifact runs/heldout4
Writes bench/results/coldstart.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.baselines import PriorRouter, TfidfLogisticRouter  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.evaluate import registry_cost_estimate  # noqa: E402
from pickwise.predictor.inference import ModelVector, load_predictor  # noqa: E402
from pickwise.predictor.routing_metrics import routing_figures  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402
from pickwise.registry.probes.probe_set import load_probe_set  # noqa: E402

TABLE = "mmlu_pro_25models.parquet"


def probe_scores(table, model: str) -> dict[str, float]:
    """The model's results on the probe prompts taken from this table (what a user would submit)."""
    column = table.model_names.index(model)
    row = {pid: i for i, pid in enumerate(table.prompt_ids)}
    out = {}
    for entry in load_probe_set():
        i = row.get(entry.prompt_id)
        if i is not None and not np.isnan(table.quality[i, column]):
            out[entry.prompt_id] = float(table.quality[i, column])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heldout-artifact", required=True)
    parser.add_argument("--artifact", default=str(default_artifact_dir()), help="trained-in artifact")
    parser.add_argument("--sizes", default="50,100,200,all")
    parser.add_argument("--seeds", type=int, default=5, help="random draws per size (probe subsets, training rows)")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--label-fit-rows", default="220,500,2000,all",
                        help="also fit the held-out models from this many random *training-row* labels each "
                             "(comma list, 'all' = every training row; '' skips): how capture grows with labels "
                             "beyond the probe set, and what the fixed encoder allows with all of them")
    args = parser.parse_args()

    table = load_table(default_data_dir() / TABLE)
    snapshot = load_registry(default_registry_dir())
    held = load_predictor(args.heldout_artifact, "cpu")
    full = load_predictor(args.artifact, "cpu")
    excluded = list(held.meta["train_config"]["exclude_models"])
    test = (held.row_split(table) == "test") & (full.row_split(table) == "test")
    train = held.row_split(table) == "train"
    sub, names = table.subset(test), table.model_names
    c_hat = registry_cost_estimate(table, snapshot)[test]
    print(f"held-out models: {excluded}; {int(test.sum())} held-out prompts", flush=True)

    u = held.prompt_vectors(sub.prompts)[0].astype(np.float64)
    scores = {m: probe_scores(table, m) for m in excluded}
    print("probe results per held-out model:", {m: len(s) for m, s in scores.items()}, flush=True)

    def with_fitted(fit) -> np.ndarray:
        """Probabilities with every held-out model scored from `fit(model) -> (e, b)`, the rest as trained."""
        vectors = [ModelVector(m, *fit(m), "probe") if m in excluded else held.model_vector(m) for m in names]
        return held.probabilities(u, vectors)

    def cold_predictions(size: str, seed: int) -> tuple[np.ndarray, float]:
        rng = np.random.default_rng(seed)
        fit_seconds = 0.0

        def fit(m):
            nonlocal fit_seconds
            ids = sorted(scores[m])
            if size != "all":
                ids = list(rng.choice(ids, size=int(size), replace=False))
            start = time.perf_counter()
            fitted = held.fit_probe({pid: scores[m][pid] for pid in ids})
            fit_seconds = max(fit_seconds, time.perf_counter() - start)
            return fitted

        return with_fitted(fit), fit_seconds

    predictions = {
        "trained-in": full.predict(sub.prompts, names),
        "tfidf-full-labels": TfidfLogisticRouter().fit(table.subset(train).prompts, table.subset(train).quality).predict(sub.prompts),
        "prior": PriorRouter().fit(table.subset(train).prompts, table.subset(train).quality).predict(sub.prompts),
    }
    predictions["cold-start-all"], fit_all = cold_predictions("all", 0)
    label_sizes = [s for s in args.label_fit_rows.split(",") if s]
    train_rows = np.flatnonzero(train)
    u_train = held.prompt_vectors([table.prompts[i] for i in train_rows])[0] if label_sizes else None

    def fit_on_labels(n: int, seed: int):
        """Fits from `n` random training rows' labels (all of them when n covers every row)."""
        picked = np.random.default_rng(seed).permutation(len(train_rows))[:n]

        def fit(m):
            y = table.quality[train_rows[picked], names.index(m)]
            ok = ~np.isnan(y)
            return held.fit_results(u_train[picked][ok], y[ok], tables=[table.name])

        return fit

    every_label = f"fit-on-{len(train_rows)}-train-rows"
    if "all" in label_sizes:
        predictions[every_label] = with_fitted(fit_on_labels(len(train_rows), 0))
    figures = routing_figures(sub.quality, sub.cost, c_hat, predictions, names,
                              reference="trained-in", n_bootstrap=args.bootstrap)
    capture = {k: r.capture for k, r in figures.routers.items()}
    cols = [names.index(m) for m in excluded]
    obs = ~np.isnan(sub.quality[:, cols])
    brier_held = {k: float(np.mean((p[:, cols][obs] - sub.quality[:, cols][obs]) ** 2)) for k, p in predictions.items()}

    def capture_of(q: np.ndarray) -> float:
        return routing_figures(sub.quality, sub.cost, c_hat, {"r": q}, names, n_bootstrap=0).routers["r"].capture

    def curve_point(source: str, size: str, captures: list[float]) -> dict:
        point = {"source": source, "size": size, "capture_mean": float(np.mean(captures)),
                 "capture_std": float(np.std(captures)),
                 "ratio_to_trained_in": float(np.mean(captures) / capture["trained-in"]), "runs": len(captures)}
        print(f"{source} {size:>5}: capture {point['capture_mean']:.4f} ± {point['capture_std']:.4f} "
              f"({point['ratio_to_trained_in']:.1%} of trained-in)", flush=True)
        return point

    # one random draw of a few hundred results is noisy (docs/coldstart.md gives the spread), so
    # every size but "all" is a mean over --seeds draws
    by_size = {}
    for size in args.sizes.split(","):
        seeds = range(args.seeds if size != "all" else 1)
        by_size[size] = curve_point("probe results", size, [capture_of(cold_predictions(size, s)[0]) for s in seeds])
    for size in label_sizes:
        n = len(train_rows) if size == "all" else min(int(size), len(train_rows))
        if n == len(train_rows) and every_label in capture:  # fitted once above, for the figures table
            captures = [capture[every_label]]
        else:
            seeds = range(args.seeds if n < len(train_rows) else 1)
            captures = [capture_of(with_fitted(fit_on_labels(n, s))) for s in seeds]
        by_size[f"labels-{size}"] = curve_point("training labels", str(n), captures)

    report = {
        "table": TABLE, "held_out_models": excluded, "n_test_prompts": int(test.sum()),
        "heldout_artifact": args.heldout_artifact, "artifact": args.artifact,
        "capture": capture,
        "c2m": {k: r.c2m for k, r in figures.routers.items()},
        "aiq": {k: r.aiq for k, r in figures.routers.items()},
        "brier_on_held_out_models": brier_held,
        "ratio_cold_all_to_trained_in": capture["cold-start-all"] / capture["trained-in"],
        "bootstrap_difference_vs_trained_in": {k: r.capture_diff_bootstrap.model_dump() if r.capture_diff_bootstrap else None
                                               for k, r in figures.routers.items()},
        "capture_by_number_of_results": by_size,
        "fit_seconds_per_model": fit_all,
        "command": "python -m bench.bench_coldstart " + " ".join(sys.argv[1:]),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "coldstart.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [f"MMLU-Pro held-out prompts: {report['n_test_prompts']}; held-out models: {', '.join(excluded)}", "",
             "| router | capture | c2m | Brier (held-out models) |", "|---|---|---|---|"]
    for k in ("trained-in", "cold-start-all", *[k for k in capture if k.startswith("fit-on-")],
              "tfidf-full-labels", "prior", "zero", "oracle"):
        if k in capture:
            c2m = report["c2m"].get(k)
            lines.append(f"| {k} | {capture[k]:.4f} | {'inf' if c2m is None else f'{c2m:.3f}'} | "
                         f"{brier_held.get(k, float('nan')):.4f} |")
    lines += ["", f"| results the fit uses | how many | capture (mean ± sd over {args.seeds} random draws) | "
              "share of trained-in |", "|---|---|---|---|"]
    for r in by_size.values():
        lines.append(f"| {r['source']} | {r['size']} | {r['capture_mean']:.4f} ± {r['capture_std']:.4f} | "
                     f"{r['ratio_to_trained_in']:.1%} |")
    (out / "coldstart.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
