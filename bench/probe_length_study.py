"""How well a model's answer lengths are predicted from its probe answers' lengths alone.

For every model with lengths in MMLU-Pro and MMLU-57 + GSM8K, the model is treated as new: its
trained length vector is dropped from the prior's population, and its length vector is fitted
(`LengthModel.fit`, as `QualityPredictor.fit_probe_lengths` does) from its answers' lengths on the
probe prompts of that table (the tables' own counts stand in for `probe run`'s). Scored on a seeded
sample of the table's validation rows (the encoder and the length model never trained on them),
against the registry's `expected_output_tokens` (the fallback without length evidence), the
population prior (no evidence at all) and the model's own trained vector (trained with these rows'
neighbours: an upper reference). Median form, as the decision's calibration table.

Run: PYTHONPATH=. HF_HUB_OFFLINE=1 python -m bench.probe_length_study [--rows 300]
Writes bench/results/probe_length_study.{json,md}.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.inference import load_predictor  # noqa: E402
from pickwise.predictor.lengths import log2_tokens  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402
from pickwise.registry.probes.probe_set import load_probe_set  # noqa: E402

TABLES = {"MMLU-Pro": "mmlu_pro_25models", "MMLU-57 + GSM8K": "mmlu57_gsm8k_9models"}


def without(model, j: int):
    """The length model with trained model j left out of the prior's population."""
    keep = [k for k in range(len(model.names)) if k != j]
    names = [model.names[k] for k in keep]
    return dataclasses.replace(model, names=names, vectors=model.vectors[keep], bias=model.bias[keep],
                               log2_smear=model.log2_smear[keep], log2_range=model.log2_range[keep],
                               aliases={a: n for a, n in model.aliases.items() if n in names},
                               model_tables={n: t for n, t in model.model_tables.items() if n in names})


def errors(log2_estimate: np.ndarray, log2_truth: np.ndarray) -> dict:
    e = np.abs(log2_estimate - log2_truth)
    return {"median_abs_log2_error": float(np.median(e)), "within_2x": float(np.mean(e <= 1.0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300, help="validation rows sampled per table (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    predictor = load_predictor(default_artifact_dir(), "cpu", precision="fp32")
    lengths = predictor.lengths
    registry = load_registry(default_registry_dir())
    probe_ids, probe_u = predictor.probe_vectors()
    probe_row = {pid: i for i, pid in enumerate(probe_ids)}
    by_table = {}
    for e in load_probe_set():
        by_table.setdefault(e.table, []).append(e.prompt_id)
    rng = np.random.default_rng(args.seed)
    results = {}
    for label, stem in TABLES.items():
        table = load_table(default_data_dir() / f"{stem}.parquet")
        position = {pid: i for i, pid in enumerate(table.prompt_ids)}
        val = np.flatnonzero(np.asarray(predictor.row_split(table)) == "val")
        rows = np.sort(rng.choice(val, size=min(args.rows, len(val)), replace=False))
        u = predictor.prompt_vectors([table.prompts[i] for i in rows])[0].astype(np.float64)
        probes = [p for p in by_table.get(stem, []) if p in position and p in probe_row]
        per_model = {}
        for j, name in enumerate(table.model_names):
            k = lengths.names.index(name) if name in lengths.names else None
            truth = table.out_tokens[rows, j]
            seen = np.isfinite(truth)
            if k is None or seen.sum() < 20:
                continue
            probe_tokens = np.array([table.out_tokens[position[p], j] for p in probes])
            ok = np.isfinite(probe_tokens)
            held = without(lengths, k)
            fitted = held.fit(probe_u[[probe_row[p] for p, o in zip(probes, ok) if o]], probe_tokens[ok], [stem], name)
            prior = held.fit(probe_u[:0], np.zeros(0), [stem], name)
            y = log2_tokens(truth[seen])
            est = {
                "probe fit": held.predict(u[seen], [name], form="median", vectors=[fitted]).log2_median[:, 0],
                "population prior": held.predict(u[seen], [name], form="median", vectors=[prior]).log2_median[:, 0],
                "trained (reference)": lengths.predict(u[seen], [name], form="median").log2_median[:, 0],
            }
            if name in registry:
                est["registry"] = np.full(int(seen.sum()), np.log2(registry.get(name).expected_output_tokens))
            per_model[name] = {"rows": int(seen.sum()), "probe_answers": int(ok.sum()),
                               **{k2: errors(v, y) for k2, v in est.items()}}
        results[label] = per_model
        print(label, len(per_model), "models", flush=True)
    out = ROOT / "bench" / "results" / "probe_length_study"
    out.with_suffix(".json").write_text(json.dumps({"rows_per_table": args.rows, "seed": args.seed,
                                                    "tables": results}, indent=1))
    lines = ["# Output lengths from probe answers (validation rows; median over models)", "",
             "| table (models) | estimator | median \\|log2 error\\| | within 2x |", "|---|---|---|---|"]
    for label, per_model in results.items():
        for estimator in ("registry", "population prior", "probe fit", "trained (reference)"):
            have = [m[estimator] for m in per_model.values() if estimator in m]
            if have:
                lines.append(f"| {label} ({len(have)}) | {estimator} | "
                             f"{np.median([h['median_abs_log2_error'] for h in have]):.2f} | "
                             f"{np.median([h['within_2x'] for h in have]):.2f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
