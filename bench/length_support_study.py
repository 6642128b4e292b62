"""The serving length path with and without the task posterior (docs/decisions/output-lengths.md,
rounds 2 to 6): does pulling each trained model's estimate towards the pool's typical count where it
has no length rows (`LengthModel.toward_pool`, twins counting on lettered prompts) route as well as
the estimates without it?

Both routers are the serving path's own: `QualityPredictor.output_tokens` without the task posterior
(trained vectors, clips, open-ended floor) and with it and the prompts' `has_options` flags, as select
decides. Quality is select's (`QualityPredictor.evidence` with the task posterior and pooled
embedding), the same for both, so only the cost estimate differs; routing and paired bootstrap are
`bench.output_length_study`'s. Features are the frozen fp32 ones of `bench.one_scale_features`
(u, task posterior, pooled for every priced row and the everyday prompts; cached under
.cache/one_scale), so no table is re-encoded here. The rounds' own candidates (`--twins`,
`--voters`, `--options`) ran with this script at commit fa11df6, whose serving code still had their
knobs.

Also reported, not deciding: six models' estimates on bench/everyday_prompts.jsonl as the spread
across them (max/min, median over a kind's prompts) per kind, and the QA pass's prompts.

Run: PYTHONPATH=. HF_HUB_OFFLINE=1 python -m bench.length_support_study [--test]
Writes bench/results/length_support_shipped_study[_test].{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.one_scale_features import EVERYDAY, load_features  # noqa: E402
from bench.output_length_study import LENGTH_TABLES, ROUTED, calibration, fmt_ci, paired_routing, prices  # noqa: E402
from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.data import PRICED_TABLES, default_data_dir, load_table  # noqa: E402
from pickwise.predictor.inference import load_predictor  # noqa: E402
from pickwise.predictor.lengths import has_options  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402

WITHOUT, SHIPPED = "no-posterior", "shipped"
ROUTERS = (WITHOUT, SHIPPED)
SHORT = 20  # round 5's everyday symptom: an estimate under this many tokens on a prompt not read as open-ended
# chosen before any round-2 figure: the two models of the QA pass and four more across the tables
SIX = ("gemini-1.5-pro-002", "gpt-4-1106-preview", "claude-v2", "meta/llama-2-70b-chat",
       "mistralai/Mixtral-8x7B-Instruct-v0.1", "qwen2.5-7b-instruct")
QA = (("gemini-1.5-pro-002", "Write a short poem about the sea."),
      ("gemini-1.5-pro-002", "Write a Python function that merges two sorted lists."),
      ("gpt-4-1106-preview", "Quelle est la capitale de la France ?"))


def both(predictor, u, tasks, pooled, specs, snapshot, prompts) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Select's quality [N, M] and both routers' expected output tokens for the same features."""
    u = np.asarray(u, dtype=np.float64)
    evidence = predictor.evidence(u, [predictor.model_vector(s, snapshot) for s in specs], tasks, pooled=pooled)
    out = {WITHOUT: predictor.output_tokens(u, specs, evidence.open_ended, snapshot)[0],
           SHIPPED: predictor.output_tokens(u, specs, evidence.open_ended, snapshot, tasks,
                                            options=has_options(prompts))[0]}
    return evidence.quality, out


def check_features(predictor, prompts: list[str], cached_u: np.ndarray) -> float:
    """Largest |u| difference between the cache and the predictor's own encoding of a few prompts."""
    fresh = predictor.prompt_features(prompts).u
    return float(np.max(np.abs(fresh - cached_u)))


def spread(tokens: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    """Per kind: median over its prompts of max/min estimate across the models."""
    ratio = tokens.max(axis=1) / tokens.min(axis=1)
    return {k: float(np.median(ratio[kinds == k])) for k in dict.fromkeys(kinds.tolist())}


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
    priced, scored = feats["priced"], "test" if args.test else "val"
    stems = list(PRICED_TABLES.values())

    routing, calib, drift = {}, {}, {}
    for key in ROUTED:
        stem = LENGTH_TABLES[key]
        table = load_table(default_data_dir() / f"{stem}.parquet")
        mine = np.flatnonzero(priced["table"] == stems.index(stem))
        mine = mine[np.argsort(priced["row"][mine])]
        if len(mine) != len(table) or not np.array_equal(priced["row"][mine], np.arange(len(table))):
            raise ValueError(f"the one-scale cache's rows of {stem} differ from the table; delete .cache/one_scale")
        drift[key] = check_features(predictor, table.prompts[:4], priced["u"][mine[:4]])
        pick = mine[priced["split"][mine] == scored]
        rows = priced["row"][pick]
        sub = table.subset(rows)
        specs = [snapshot.get(n) for n in table.model_names]
        q_hat, tokens = both(predictor, priced["u"][pick], priced["tasks"][pick], priced["pooled"][pick], specs,
                             snapshot, [table.prompts[i] for i in rows])
        calib[key] = calibration(tokens, sub.out_tokens)
        p_in, p_out, fee = prices(table, snapshot)
        c_hats = {k: sub.in_tokens[:, None] * p_in + v * p_out + fee for k, v in tokens.items()}
        routing[key] = paired_routing(sub.quality, sub.cost, q_hat, c_hats, SHIPPED, args.bootstrap, args.seed)
        print(key, json.dumps({k: round(v["capture"], 4) for k, v in routing[key]["routers"].items()}), flush=True)

    every = feats["everyday"]
    six = [snapshot.get(n) for n in SIX]
    texts = [json.loads(line)["prompt"] for line in EVERYDAY.read_text().splitlines() if line.strip()]
    _, tokens = both(predictor, every["u"], every["tasks"], every["pooled"], six, snapshot, texts)
    spreads = {k: spread(v, every["kind"]) for k, v in tokens.items()}
    trained = [s for s in snapshot.enabled() if (v := predictor.length_vector(s, snapshot)) is not None
               and v.source == "trained"]
    _, trained_tokens = both(predictor, every["u"], every["tasks"], every["pooled"], trained, snapshot, texts)
    p_open = predictor.evidence(np.asarray(every["u"], dtype=np.float64), [], every["tasks"],
                                pooled=every["pooled"]).open_ended
    priced_like = p_open < 0.5
    short = {k: float((v[priced_like] < SHORT).mean()) for k, v in trained_tokens.items()}
    qa = []
    for name, prompt in QA:
        f = predictor.prompt_features([prompt])
        _, t = both(predictor, f.u, f.tasks, f.pooled, [snapshot.get(name)], snapshot, [prompt])
        qa.append({"model": name, "prompt": prompt, **{k: float(v[0, 0]) for k, v in t.items()}})

    against = {r: {k: routing[k]["routers"][r]["ref_minus_this_capture"] for k in ROUTED} for r in ROUTERS[:-1]}
    holds = all(v["hi"] >= 0.0 for v in against[WITHOUT].values())  # each interval includes 0 or lies above it
    means = {r: float(np.mean([routing[k]["routers"][r]["capture"] for k in ROUTED])) for r in ROUTERS}
    result = {"split": scored, "bootstrap": args.bootstrap, "seed": args.seed, "feature_drift": drift,
              "routers": list(ROUTERS), "candidate": SHIPPED, "mean_capture": means,
              "routing": routing, "calibration": calib, "everyday_spread": spreads, "qa": qa,
              "candidate_minus": against, "holds": holds, "six": list(SIX),
              "everyday_short": {"share": short, "under_tokens": SHORT, "prompts": int(priced_like.sum()),
                                 "models": len(trained)}}
    name = "length_support_shipped_study" + ("_test" if args.test else "")
    out = ROOT / "bench" / "results"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    routers, cand = r["routers"], r["candidate"]
    rule = f"every interval includes 0 or favours {cand}: **{r['holds']}**"
    means = ", ".join(f"{k} {v:.3f}" for k, v in r["mean_capture"].items())
    lines = [f"{r['split']} rows; paired bootstrap {r['bootstrap']}; {rule}; mean capture over the tables: {means}",
             "", "| table (prompts) | " + " | ".join(f"capture {k}" for k in routers) + " | "
             + " | ".join(f"{cand} − {k} [95%]" for k in routers[:-1]) + " | c2m " + " / ".join(routers)
             + " | median abs log2 err / within 2x, " + " → ".join(routers) + " |",
             "|---|" + "---:|" * len(routers) + "---|" * (len(routers) - 1) + "---|---|"]
    for key in ROUTED:
        f, c = r["routing"][key]["routers"], r["calibration"][key]
        c2m = " / ".join("∞" if f[k]["c2m"] is None else f"{f[k]['c2m']:.2f}" for k in routers)
        cal = " → ".join(f"{c[k]['mae_log2']:.2f} / {c[k]['within_2x']:.2f}" for k in routers)
        lines.append(f"| {key} ({r['routing'][key]['n_prompts']}) | "
                     + " | ".join(f"{f[k]['capture']:.3f}" for k in routers) + " | "
                     + " | ".join(fmt_ci(r["candidate_minus"][k][key]) for k in routers[:-1]) + f" | {c2m} | {cal} |")
    kinds = list(r["everyday_spread"][routers[0]])
    lines += ["", f"Everyday prompts, spread across {', '.join(r['six'])} (max/min, median per kind):", "",
              "| | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]
    for k, s in r["everyday_spread"].items():
        lines.append(f"| {k} | " + " | ".join(f"{s[kind]:.1f}" for kind in kinds) + " |")
    lines += ["", f"QA prompts (expected output tokens, {' → '.join(routers)}):", ""]
    lines += [f"- {q['model']} on {q['prompt']!r}: " + " → ".join(f"{q[k]:.0f}" for k in routers) for q in r["qa"]]
    e = r.get("everyday_short")
    if e:
        lines += ["", f"Everyday prompts not read as open-ended ({e['prompts']}) × trained models ({e['models']}): "
                  f"share of estimates under {e['under_tokens']} tokens, " + " → ".join(
                      f"{k} {v:.3f}" for k, v in e["share"].items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
