"""Round 4 of docs/decisions/output-lengths.md: does smearing by task and correctness (`predictor.length_smear`)
route above (b), each model's per-task mean length, on every table?

Routers: (b) `task_mean` (round 1's, from the table's task labels), `shipped` (the serving path's
`QualityPredictor.output_tokens` with the task posterior, round 3), and the three candidates of
`length_smear.KINDS`, each the shipped path with a smear table fitted on the artifact's training rows
of the four length tables. Quality is select's for every router, so only the cost estimate differs;
routing and paired bootstrap are `bench.output_length_study`'s, features the frozen ones of
`bench.one_scale_features` (.cache/one_scale).

Run: PYTHONPATH=. HF_HUB_OFFLINE=1 python -m bench.length_smear_study [--test]
Writes bench/results/length_smear_study[_test].{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.length_support_study import check_features  # noqa: E402
from bench.one_scale_features import ALPACA, load_features  # noqa: E402
from bench.output_length_study import (  # noqa: E402
    LENGTH_TABLES,
    ROUTED,
    calibration,
    fmt_ci,
    paired_routing,
    prices,
    task_mean_tokens,
)
from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.data import PRICED_TABLES, default_data_dir, load_table  # noqa: E402
from pickwise.predictor.inference import load_predictor  # noqa: E402
from pickwise.predictor.length_smear import KINDS, fit_smear_table  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402

TASK_MEAN, SHIPPED = "task_mean", "shipped"


def training_answers(predictor, feats: dict) -> dict:
    """The four length tables' training rows: u, task index into the artifact's tasks, and per answer column
    the canonical model name, count and quality (columns of every table side by side, NaN elsewhere)."""
    aliases, tasks = predictor.meta.get("aliases", {}), list(predictor.meta["tasks"])
    priced, stems = feats["priced"], list(PRICED_TABLES.values())
    blocks = []
    for stem in LENGTH_TABLES.values():
        table = load_table(default_data_dir() / f"{stem}.parquet")
        if stem == ALPACA:
            u, task = feats["alpaca"]["u"], np.full(len(table), -1)
            if len(u) != len(table):
                raise ValueError(f"the one-scale cache has {len(u)} {stem} rows, the table {len(table)}")
        else:
            mine = np.flatnonzero(priced["table"] == stems.index(stem))
            mine = mine[np.argsort(priced["row"][mine])]
            u = priced["u"][mine]
            task = np.array([tasks.index(t) if t in tasks else -1 for t in priced["task"][mine]])
        train = np.asarray(predictor.row_split(table)) == "train"
        blocks.append({"u": u[train], "task": task[train], "counts": table.out_tokens[train],
                       "quality": table.quality[train], "names": [aliases.get(n, n) for n in table.model_names]})
    n = sum(len(b["u"]) for b in blocks)
    width = sum(len(b["names"]) for b in blocks)
    counts, quality = np.full((n, width), np.nan), np.full((n, width), np.nan)
    r = c = 0
    for b in blocks:
        rows, cols = len(b["u"]), len(b["names"])
        counts[r:r + rows, c:c + cols], quality[r:r + rows, c:c + cols] = b["counts"], b["quality"]
        r, c = r + rows, c + cols
    return {"u": np.vstack([b["u"] for b in blocks]).astype(np.float64),
            "task": np.concatenate([b["task"] for b in blocks]), "counts": counts, "quality": quality,
            "names": [n for b in blocks for n in b["names"]]}


def with_smear(predictor, table):
    """A predictor sharing `predictor`'s encoder whose length model uses the smear table `table`."""
    other = copy.copy(predictor)
    other.lengths = dataclasses.replace(predictor.lengths, smear=table)
    other._length_fits = {}
    return other


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test", action="store_true", help="score the held-out rows (read once, to report)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    predictor = load_predictor(default_artifact_dir(), "cpu", precision="fp32")
    snapshot = load_registry(default_registry_dir())
    feats = load_features(predictor)
    answers = training_answers(predictor, feats)
    tables = {kind: fit_smear_table(kind, predictor.lengths, predictor.meta["tasks"], answers["u"], answers["task"],
                                    answers["names"], answers["counts"], answers["quality"]) for kind in KINDS}
    routers = {SHIPPED: predictor, **{k: with_smear(predictor, t) for k, t in tables.items()}}
    priced, scored, stems = feats["priced"], "test" if args.test else "val", list(PRICED_TABLES.values())

    routing, calib, drift = {}, {}, {}
    for key in ROUTED:
        stem = LENGTH_TABLES[key]
        table = load_table(default_data_dir() / f"{stem}.parquet")
        mine = np.flatnonzero(priced["table"] == stems.index(stem))
        mine = mine[np.argsort(priced["row"][mine])]
        if len(mine) != len(table) or not np.array_equal(priced["row"][mine], np.arange(len(table))):
            raise ValueError(f"the one-scale cache's rows of {stem} differ from the table; delete .cache/one_scale")
        drift[key] = check_features(predictor, table.prompts[:4], priced["u"][mine[:4]])
        split = np.asarray(predictor.row_split(table))
        pick = mine[priced["split"][mine] == scored]
        sub = table.subset(priced["row"][pick])
        specs = [snapshot.get(n) for n in table.model_names]
        u, tasks, pooled = priced["u"][pick].astype(np.float64), priced["tasks"][pick], priced["pooled"][pick]
        evidence = predictor.evidence(u, [predictor.model_vector(s, snapshot) for s in specs], tasks, pooled=pooled)
        max_out = np.array([s.max_output_tokens for s in specs])
        tokens = {TASK_MEAN: np.minimum(task_mean_tokens(table, split == "train")[priced["row"][pick]], max_out)}
        for name, p in routers.items():
            tokens[name] = p.output_tokens(u, specs, evidence.open_ended, snapshot, tasks,
                                           quality=evidence.quality)[0]
        calib[key] = calibration(tokens, sub.out_tokens)
        p_in, p_out, fee = prices(table, snapshot)
        c_hats = {k: sub.in_tokens[:, None] * p_in + v * p_out + fee for k, v in tokens.items()}
        routing[key] = {ref: paired_routing(sub.quality, sub.cost, evidence.quality, c_hats, ref, args.bootstrap,
                                            args.seed) for ref in (SHIPPED, TASK_MEAN)}
        print(key, json.dumps({k: round(v["capture"], 4) for k, v in routing[key][SHIPPED]["routers"].items()}),
              flush=True)

    names = [TASK_MEAN, SHIPPED, *KINDS]
    capture = {k: {t: routing[t][SHIPPED]["routers"][k]["capture"] for t in ROUTED} for k in names}
    means = {k: float(np.mean(list(v.values()))) for k, v in capture.items()}
    # rule 1: eligible unless candidate − shipped lies wholly below 0 on a table (shipped − candidate above)
    eligible = [k for k in KINDS if all(routing[t][SHIPPED]["routers"][k]["ref_minus_this_capture"]["lo"] <= 0.0
                                        for t in ROUTED)]
    chosen = max(eligible, key=lambda k: (means[k], -KINDS.index(k))) if eligible else None
    adopt = chosen is not None and all(capture[chosen][t] > capture[TASK_MEAN][t] for t in ROUTED)
    result = {"split": scored, "bootstrap": args.bootstrap, "seed": args.seed, "feature_drift": drift,
              "routers": names, "capture": capture, "mean_capture": means, "eligible": eligible, "chosen": chosen,
              "adopt": adopt, "routing": {t: {ref: r for ref, r in v.items()} for t, v in routing.items()},
              "calibration": calib}
    name = "length_smear_study" + ("_test" if args.test else "")
    out = ROOT / "bench" / "results"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    names = r["routers"]
    verdict = (f"chosen by the rule: **{r['chosen']}**; adopted (above {TASK_MEAN} on every table): **{r['adopt']}**"
               if r["split"] == "val" else "test rows: reported only (the rule reads validation rows)")
    lines = [f"{r['split']} rows; paired bootstrap {r['bootstrap']}; eligible: {', '.join(r['eligible']) or 'none'}; "
             f"{verdict}", "", "Mean capture over the tables: "
             + ", ".join(f"{k} {v:.4f}" for k, v in r["mean_capture"].items()), "",
             "| table (prompts) | " + " | ".join(names) + " | " + " | ".join(f"{k} − shipped" for k in KINDS)
             + " | " + " | ".join(f"{k} − task_mean" for k in KINDS) + " |",
             "|---|" + "---:|" * len(names) + "---|" * (2 * len(KINDS))]
    for t in ROUTED:
        ship, base = r["routing"][t][SHIPPED], r["routing"][t][TASK_MEAN]
        lines.append(f"| {t} ({ship['n_prompts']}) | " + " | ".join(f"{r['capture'][k][t]:.3f}" for k in names)
                     + " | " + " | ".join(fmt_ci(_negated(ship["routers"][k]["ref_minus_this_capture"])) for k in KINDS)
                     + " | " + " | ".join(fmt_ci(_negated(base["routers"][k]["ref_minus_this_capture"])) for k in KINDS)
                     + " |")
    lines += ["", "c2m and length calibration (median |log2 error| / within 2x):", "",
              "| table | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for t in ROUTED:
        f, c = r["routing"][t][SHIPPED]["routers"], r["calibration"][t]
        lines.append(f"| {t} | " + " | ".join(
            ("∞" if f[k]["c2m"] is None else f"{f[k]['c2m']:.2f}") + f"; {c[k]['mae_log2']:.2f} / {c[k]['within_2x']:.2f}"
            for k in names) + " |")
    return "\n".join(lines) + "\n"


def _negated(d: dict) -> dict:
    """ref − this as this − ref."""
    return {**d, "lo": -d["hi"], "hi": -d["lo"]}


if __name__ == "__main__":
    raise SystemExit(main())
