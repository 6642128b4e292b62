"""Compare predictor artifacts on the same rows of every priced table: capture, c2m, Brier, ECE.

Why: choosing a training recipe (LoRA layers, epochs, prompt length) needs every candidate scored
on the same prompts with paired intervals, and the choice must be made on rows no candidate
trained on *and* that the final report does not reuse: `--split val` scores the validation rows
(for choosing; the temperature was fitted there, so Brier/ECE are slightly flattering), `--split
test` the held-out rows (for reporting the chosen one). All candidates must share the split
(`--split-seed`), which is checked row by row. TF-IDF + logistic regression, trained on the
first artifact's training rows, is scored alongside. Differences are "first artifact − this one"
over paired bootstrap resamples of the prompts. Candidates run their encoder in bf16 unless the
directory ends in @PRECISION (one of predictor.PRECISIONS): the same artifact twice, at two
precisions, gives the accuracy cost of a speed-up as paired intervals.

Run: .venv/bin/python -m bench.compare_artifacts --split val \
        shipped=predictor/artifacts/default l4e16=runs/gpu/l4_e16 --name lora_sweep_val
     .venv/bin/python -m bench.compare_artifacts --split test --name onnx_int8_test \
        fp32=predictor/artifacts/default@fp32 onnx=predictor/artifacts/default@onnx-int8
Writes bench/results/<name>.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pickwise.predictor import PRECISIONS  # noqa: E402
from pickwise.predictor.baselines import TfidfLogisticRouter  # noqa: E402
from pickwise.predictor.data import PRICED_TABLES as TABLES  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.evaluate import registry_cost_estimate  # noqa: E402
from pickwise.predictor.inference import load_predictor  # noqa: E402
from pickwise.predictor.routing_metrics import routing_figures  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402

# the four priced tables (registry.build_defaults.TABLES: key -> parquet stem), by stem, with report labels
LABELS = {"mmlu_pro": "MMLU-Pro", "routerbench": "RouterBench", "mmlu57": "MMLU-57+GSM8K", "llmrouter": "LLMRouter"}
PRICED_TABLES = {stem: LABELS[key] for key, stem in TABLES.items()}
TFIDF = "tfidf"
DEFAULT_PRECISION = "bf16"  # the service's precision on the CPUs these comparisons ran on


def parse_candidates(items: list[str]) -> dict[str, tuple[str, str]]:
    """NAME=DIR[@PRECISION] items -> {name: (dir, precision)}, in order (the first is the reference)."""
    out: dict[str, tuple[str, str]] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"candidate {item!r}: expected NAME=ARTIFACT_DIR[@PRECISION]")
        if name in out or name == TFIDF:
            raise SystemExit(f"candidate name {name!r} is used twice or reserved")
        base, at, precision = path.rpartition("@")
        if not at:
            base, precision = path, DEFAULT_PRECISION
        elif precision not in PRECISIONS:
            raise SystemExit(f"candidate {item!r}: precision {precision!r} is not one of {PRECISIONS}")
        out[name] = (base, precision)
    return out


def compare_table(table_name: str, predictors: dict, split: str, snapshot, bootstrap: int) -> dict:
    """Every candidate's and TF-IDF's figures on one table's `split` rows, paired against the first."""
    table = load_table(default_data_dir() / f"{table_name}.parquet")
    splits = {name: p.row_split(table) for name, p in predictors.items()}
    first = next(iter(splits.values()))
    for name, s in splits.items():
        if not np.array_equal(s, first):
            raise SystemExit(f"{name}: its split of {table_name} differs from the first artifact's "
                             "(train the candidates with the same --split-seed)")
    rows = first == split
    scored, trained = table.subset(rows), table.subset(first == "train")
    predictions = {name: p.predict(scored.prompts, table.model_names) for name, p in predictors.items()}
    predictions[TFIDF] = TfidfLogisticRouter().fit(trained.prompts, trained.quality).predict(scored.prompts)
    figures = routing_figures(scored.quality, scored.cost, registry_cost_estimate(table, snapshot)[rows],
                              predictions, table.model_names, reference=next(iter(predictors)),
                              n_bootstrap=bootstrap)
    out = {}
    for name in predictions:
        r = figures.routers[name]
        d = r.capture_diff_bootstrap
        out[name] = {"capture": r.capture, "c2m": r.c2m, "brier": r.brier, "ece": r.ece,
                     "first_minus_this": None if d is None else [d.lo, d.hi]}
    return {"prompts": int(rows.sum()), "routers": out}


def markdown(results: dict, names: list[str], meta: dict) -> str:
    tables = list(results)
    runs = ", ".join(f"{n} = {meta['artifacts'][n]} ({meta['precisions'][n]})" for n in meta["artifacts"])
    lines = [f"Split: {meta['split']} rows; paired bootstrap {meta['bootstrap']}; first artifact = reference.",
             f"Candidates: {runs}.", "",
             "| candidate | val loss | " + " | ".join(f"{PRICED_TABLES[t]} capture (first − this)" for t in tables) + " | mean capture |",
             "|---" * (len(tables) + 3) + "|"]
    for name in names:
        cells, caps = [], []
        for t in tables:
            r = results[t]["routers"][name]
            caps.append(r["capture"])
            diff = "" if r["first_minus_this"] is None else " [{:+.3f}, {:+.3f}]".format(*r["first_minus_this"])
            cells.append(f"{r['capture']:.3f}{diff}")
        loss = meta["val_loss"].get(name)
        lines.append(f"| {name} | {'-' if loss is None else f'{loss:.4f}'} | " + " | ".join(cells)
                     + f" | {np.mean(caps):.3f} |")
    lines += ["", "Brier / ECE:", ""]
    for name in names:
        lines.append(f"- {name}: " + "; ".join(
            f"{PRICED_TABLES[t]} {results[t]['routers'][name]['brier']:.4f} / {results[t]['routers'][name]['ece']:.3f}" for t in tables))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("candidates", nargs="+", metavar="NAME=ARTIFACT_DIR")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--name", default="compare_artifacts", help="results file stem under bench/results")
    args = parser.parse_args()

    candidates = parse_candidates(args.candidates)
    predictors = {name: load_predictor(path, "cpu", precision=precision) for name, (path, precision) in candidates.items()}
    snapshot = load_registry(default_registry_dir())
    results = {}
    for table_name in PRICED_TABLES:
        results[table_name] = compare_table(table_name, predictors, args.split, snapshot, args.bootstrap)
        print(table_name, " ".join(f"{k}={v['capture']:.3f}" for k, v in results[table_name]["routers"].items()),
              flush=True)
    names = [*candidates, TFIDF]
    meta = {"split": args.split, "bootstrap": args.bootstrap,
            "artifacts": {name: path for name, (path, _) in candidates.items()},
            "precisions": {name: precision for name, (_, precision) in candidates.items()},
            "val_loss": {n: min(h["val_loss"] for h in p.meta["history"]) for n, p in predictors.items()},
            "train_config": {n: {**p.meta["train_config"], **{k: p.meta["model_config"][k] for k in ("lora_layers", "max_len")},
                                 "best_epoch": p.meta["best_epoch"], "device": p.meta.get("device")}
                             for n, p in predictors.items()},
            "command": " ".join(sys.argv)}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({"meta": meta, "tables": results}, indent=2))
    text = markdown(results, names, meta)
    (out / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
