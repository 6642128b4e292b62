"""Does a per-prompt output-length estimate route better than a constant? (docs/decisions/output-lengths.md)

Cost as select decides it: ĉ = prompt tokens x input price + output tokens x output price +
per-request fee, registry prices. Three ways to fill in "output tokens":
(a) `registry`: each model's `expected_output_tokens`, on every prompt;
(b) `task_mean`: each model's mean length per task (the table's task column) on the training rows;
the candidates of `predictor.lengths` (`linear`, `mlp`, and `pooled`, a reference the service's
encoder cannot feed), each as a median or a mean count. Quality is the shipped predictor's,
from its frozen prompt vectors, for every router alike, so only the cost estimate differs.

Every length model is fitted on the artifact's training rows of the four tables with output
lengths (MMLU-Pro, RouterBench subset, MMLU-57 + GSM8K, AlpacaEval), early-stopped on the
validation rows. By default the validation rows are scored (to choose, by the decision's rule);
`--test` scores the held-out rows (read once, to report). Length calibration (median |log2 error|,
share within a factor of 2) is reported on the same rows, AlpacaEval included; routing on the
three priced tables with output lengths, with paired bootstrap intervals (reference: the chosen
candidate, or --reference).

Run: PYTHONPATH=. HF_HUB_OFFLINE=1 python -m bench.output_length_study [--test] [--write-artifact]
The first run encodes every prompt of the four tables (cached under .cache/output_length_study).
Writes bench/results/output_length_study[_test].{json,md}; --write-artifact stores the chosen length
model in the artifact (predictor/artifacts/default/output_lengths.npz).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.residual_study import pooled_and_u  # noqa: E402
from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.inference import load_predictor  # noqa: E402
from pickwise.predictor.lengths import encoder_key, log2_tokens, save_length_model, train_length_model  # noqa: E402
from pickwise.predictor.routing_metrics import (  # noqa: E402
    _interval,
    _resample_weights,
    _weighted_sweep_means,
    best_single_model,
    cost_to_match,
    headroom_capture,
    kept_prompts,
    lambda_grid,
    ndch,
    oracle_choice,
    oracle_hull,
    result_mask,
    router_sweep,
    single_model_points,
    table_aiq,
)
from pickwise.registry import UnknownModelError, default_registry_dir, load_registry  # noqa: E402

# short name -> parquet stem: the tables with output lengths. The first three carry prices and are routed.
LENGTH_TABLES = {
    "mmlu_pro": "mmlu_pro_25models",
    "routerbench": "routerbench_subset_arc_mbpp_winogrande_11models",
    "mmlu57": "mmlu57_gsm8k_9models",
    "alpacaeval": "alpacaeval_57models",
}
ROUTED = ("mmlu_pro", "routerbench", "mmlu57")
# fixed before any figure (docs/decisions/output-lengths.md); simpler first, for the rule's tie-break
ELIGIBLE = (("linear", "median"), ("linear", "mean"), ("mlp", "median"), ("mlp", "mean"))
REFERENCE_ONLY = (("pooled", "median"), ("pooled", "mean"))
TIE = 0.005


def table_features(predictor, stem: str, cache: Path) -> dict:
    """Every row's u and pooled embedding (fp32), cached per encoder."""
    path = cache / f"{stem}.npz"
    table = load_table(default_data_dir() / f"{stem}.parquet")
    if not path.exists():
        t0 = time.time()
        pooled, u = pooled_and_u(predictor, table.prompts)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, pooled=pooled, u=u, prompt_ids=table.prompt_ids.astype(str))
        print(f"encoded {stem}: {len(table)} prompts in {time.time() - t0:.0f} s", flush=True)
    data = dict(np.load(path, allow_pickle=False))
    if not np.array_equal(data["prompt_ids"], table.prompt_ids.astype(str)):
        raise ValueError(f"{path}: cached rows differ from {stem}; delete the cache")
    return {"table": table, "u": data["u"].astype(np.float64), "pooled": data["pooled"],
            "split": np.asarray(predictor.row_split(table)).astype(str)}


def assemble(predictor, tables: dict) -> dict:
    """One row per prompt of every table; length columns per model, tables joined on the artifact's aliases."""
    aliases = predictor.meta.get("aliases", {})
    names: list[str] = []
    col: dict[str, int] = {}
    model_tables: dict[str, list[str]] = {}
    for t in tables.values():
        for name in t["table"].model_names:
            canon = aliases.get(name, name)
            if canon not in col:
                col[canon] = len(names)
                names.append(canon)
            model_tables.setdefault(canon, [])
            if t["table"].name not in model_tables[canon]:
                model_tables[canon].append(t["table"].name)
    blocks = []
    for k, t in enumerate(tables.values()):
        table = t["table"]
        y = np.full((len(table), len(names)), np.nan)
        for j, name in enumerate(table.model_names):
            y[:, col[aliases.get(name, name)]] = log2_tokens(table.out_tokens[:, j])
        blocks.append({"y": y, "u": t["u"], "pooled": t["pooled"], "split": t["split"], "tk": np.full(len(table), k)})
    out = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    out.update(names=names, col=col, model_tables=model_tables, aliases=aliases)
    offsets = np.cumsum([0] + [len(t["table"]) for t in tables.values()])
    out["offset"] = {key: int(offsets[k]) for k, key in enumerate(tables)}
    return out


def task_mean_tokens(table, train: np.ndarray) -> np.ndarray:
    """[N, M] baseline (b): each model's mean output tokens per task over the training rows.

    A (task, model) with no training answer falls back to the model's mean over all its training rows.
    """
    out = np.empty(table.out_tokens.shape)
    tokens = np.maximum(table.out_tokens, 1.0)
    for j in range(tokens.shape[1]):
        seen = train & np.isfinite(tokens[:, j])
        overall = float(np.mean(tokens[seen, j])) if seen.any() else np.nan
        for task in np.unique(table.task):
            rows = table.task == task
            pick = seen & rows
            out[rows, j] = float(np.mean(tokens[pick, j])) if pick.any() else overall
    return out


def registry_tokens(table, snapshot, train: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """[N, M] baseline (a): each model's registry expected_output_tokens; models not registered (AlpacaEval's)
    get their mean over the training rows instead, and are listed."""
    out = np.empty(table.out_tokens.shape)
    unregistered = []
    for j, name in enumerate(table.model_names):
        try:
            out[:, j] = snapshot.get(name).expected_output_tokens
        except UnknownModelError:
            seen = train & np.isfinite(table.out_tokens[:, j])
            out[:, j] = float(np.mean(np.maximum(table.out_tokens[seen, j], 1.0)))
            unregistered.append(name)
    return out, unregistered


def calibration(estimates: dict[str, np.ndarray], actual: np.ndarray) -> dict:
    """Median |log2 estimate − log2 actual| and the share within a factor of 2, over answered cells."""
    ok = np.isfinite(actual)
    truth = log2_tokens(actual[ok])
    out = {}
    for name, est in estimates.items():
        err = np.abs(log2_tokens(est[ok]) - truth)
        out[name] = {"mae_log2": float(np.median(err)), "within_2x": float(np.mean(err <= 1.0)), "n": int(ok.sum())}
    return out


def prices(table, snapshot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    specs = [snapshot.get(n) for n in table.model_names]
    return (np.array([s.pricing.input_per_million / 1e6 for s in specs]),
            np.array([s.pricing.output_per_million / 1e6 for s in specs]),
            np.array([s.pricing.per_request for s in specs]))


def paired_routing(quality: np.ndarray, cost: np.ndarray, q_hat: np.ndarray, c_hats: dict[str, np.ndarray],
                   reference: str, n_boot: int, seed: int = 0) -> dict:
    """METRICS.md capture and c2m for one q̂ routed with several ĉ, with paired bootstrap intervals.

    `routing_metrics.routing_figures` takes one ĉ for every router; here the routers differ in ĉ
    only, so each is swept with its own, and every figure is recomputed on the same resamples.
    """
    keep = kept_prompts(quality, cost)
    quality, cost, q_hat = quality[keep], cost[keep], q_hat[keep]
    c_hats = {k: v[keep] for k, v in c_hats.items()}
    mask = result_mask(quality, cost)
    n = len(quality)
    single_c, single_q = single_model_points(quality, cost)
    best = best_single_model(single_c, single_q)
    c_min, c_max = float(np.nanmin(single_c)), float(np.nanmax(single_c))
    rows = np.arange(n)
    choice = oracle_choice(quality, cost)
    oracle_c, oracle_q = cost[rows, choice], quality[rows, choice]
    aiq_zero = table_aiq(ndch(single_c, single_q), c_min, c_max)
    aiq_oracle = table_aiq(oracle_hull(single_c, single_q, oracle_c.mean(), oracle_q.mean()), c_min, c_max)
    out = {"n_prompts": n, "best_model": {"name_index": best, "cost": float(single_c[best]),
                                          "quality": float(single_q[best])}, "routers": {}}
    picks = {}
    for name, c_hat in c_hats.items():
        curve = router_sweep(q_hat, c_hat, quality, cost, lambdas=lambda_grid(c_hat, mask))
        picks[name] = curve.picks
        hull = ndch(curve.costs, curve.qualities)
        c2m = cost_to_match(hull, single_c[best], single_q[best])
        out["routers"][name] = {"capture": headroom_capture(table_aiq(hull, c_min, c_max), aiq_zero, aiq_oracle),
                                "c2m": c2m if math.isfinite(c2m) else None}
    if n_boot <= 0:
        return out
    weights = _resample_weights(n, n_boot, np.random.default_rng(seed))
    with np.errstate(invalid="ignore", divide="ignore"):
        seen = weights @ mask
        bsc = (weights @ np.where(mask, cost, 0.0)) / seen
        bsq = (weights @ np.where(mask, quality, 0.0)) / seen
    boc, boq = weights @ oracle_c / n, weights @ oracle_q / n
    zero, head, best_c, best_q, lo, hi = (np.empty(n_boot) for _ in range(6))
    for b in range(n_boot):
        lo[b], hi[b] = np.nanmin(bsc[b]), np.nanmax(bsc[b])
        zero[b] = table_aiq(ndch(bsc[b], bsq[b]), lo[b], hi[b])
        head[b] = table_aiq(oracle_hull(bsc[b], bsq[b], boc[b], boq[b]), lo[b], hi[b]) - zero[b]
        k = best_single_model(bsc[b], bsq[b])
        best_c[b], best_q[b] = bsc[b, k], bsq[b, k]
    head = np.where(head > 1e-12, head, np.nan)
    captures, c2ms = {}, {}
    for name, p in picks.items():
        bc, bq = _weighted_sweep_means(cost, p, weights), _weighted_sweep_means(quality, p, weights)
        aiqs, c2 = np.empty(n_boot), np.empty(n_boot)
        for b in range(n_boot):
            hull = ndch(bc[:, b], bq[:, b])
            aiqs[b] = table_aiq(hull, lo[b], hi[b])
            c2[b] = cost_to_match(hull, best_c[b], best_q[b])
        captures[name], c2ms[name] = (aiqs - zero) / head, c2
        r = out["routers"][name]
        r["capture_ci"] = _interval(captures[name]).model_dump()
        r["c2m_share_finite"] = float(np.isfinite(c2).mean())
    for name in picks:
        if name == reference:
            continue
        r = out["routers"][name]
        r["ref_minus_this_capture"] = _interval(captures[reference] - captures[name]).model_dump()
        both = np.isfinite(c2ms[reference]) & np.isfinite(c2ms[name])
        diff = np.full(n_boot, np.nan)
        diff[both] = c2ms[reference][both] - c2ms[name][both]
        r["ref_minus_this_c2m"] = {**_interval(diff).model_dump(), "n_resamples_both_finite": int(both.sum())}
    return out


def choose(routing: dict) -> tuple[str, dict]:
    """The decision's rule: best mean capture over the routed tables; a simpler one within TIE wins."""
    means = {f"{k}/{f}": float(np.mean([routing[t]["routers"][f"{k}/{f}"]["capture"] for t in ROUTED]))
             for k, f in ELIGIBLE}
    top = max(means.values())
    chosen = next(name for name in means if means[name] >= top - TIE)
    return chosen, means


def fmt_ci(d: dict | None, spec: str = "+.3f") -> str:
    if not d or d.get("lo") is None:
        return "-"
    return f"[{d['lo']:{spec}}, {d['hi']:{spec}}]"


def markdown(result: dict) -> str:
    rows = result["split"]
    lines = [f"Artifact {result['artifact']} (encoder {result['encoder_key']}); {rows} rows; "
             f"paired bootstrap {result['bootstrap']}; chosen by the rule on validation rows: **{result['chosen']}**.",
             "", "## Length calibration (median |log2 error|, share within 2x)", "",
             "| table | answers | " + " | ".join(result["calibration"][next(iter(result["calibration"]))]) + " |",
             "|---|---:|" + "---|" * len(result["calibration"][next(iter(result["calibration"]))])]
    for key, cal in result["calibration"].items():
        n = next(iter(cal.values()))["n"]
        lines.append(f"| {key} | {n} | " + " | ".join(f"{c['mae_log2']:.2f} / {c['within_2x']:.2f}" for c in cal.values())
                     + " |")
    lines += ["", f"## Routing ({rows} rows): capture [95%], c2m; ref = {result['reference']}, "
              "differences are ref − router over paired resamples", ""]
    for key in ROUTED:
        r = result["routing"][key]
        lines += [f"### {key} ({r['n_prompts']} prompts)", "",
                  "| router | capture | 95% CI | ref − router | c2m | ref − router c2m (both finite) |",
                  "|---|---:|---|---|---:|---|"]
        for name, f in r["routers"].items():
            c2m = "∞" if f["c2m"] is None else f"{f['c2m']:.2f}"
            d = f.get("ref_minus_this_c2m")
            c2m_diff = "" if not d else f"{fmt_ci(d)} (n {d['n_resamples_both_finite']})"
            lines.append(f"| {name} | {f['capture']:.3f} | {fmt_ci(f.get('capture_ci'), '.3f')} | "
                         f"{fmt_ci(f.get('ref_minus_this_capture'))} | {c2m} | {c2m_diff} |")
        lines.append("")
    if "choice_means" in result:
        lines += ["Mean capture over the routed tables (eligible candidates): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in result["choice_means"].items()), ""]
    lines += ["Fits: " + "; ".join(f"{k}: best step {h['best_step']}, val loss {h['val_loss']:.4f}, "
                                   f"train noise var {h['train_noise_var']:.3f}" for k, h in result["fits"].items()), ""]
    if result.get("unregistered"):
        lines.append("Baseline (a) for models without a registry entry (AlpacaEval's) is their training-row mean.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", default=str(default_artifact_dir()))
    parser.add_argument("--test", action="store_true", help="score the held-out rows (read once, to report)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default=None, help="router the paired differences are taken against "
                        "(default: the chosen candidate)")
    parser.add_argument("--write-artifact", action="store_true", help="store the chosen length model in the artifact")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    directory = Path(args.artifact)
    predictor = load_predictor(directory, "cpu", precision="fp32")
    snapshot = load_registry(default_registry_dir())
    key = encoder_key(directory)
    cache = ROOT / ".cache" / "output_length_study" / key
    tables = {k: table_features(predictor, stem, cache) for k, stem in LENGTH_TABLES.items()}
    data = assemble(predictor, tables)
    train, val = np.flatnonzero(data["split"] == "train"), np.flatnonzero(data["split"] == "val")
    scored = "test" if args.test else "val"

    models, fits, log2_pred, smear = {}, {}, {}, {}
    for kind in ("linear", "mlp", "pooled"):
        model, history = train_length_model(data["u"], data["y"], train, val, data["names"], kind=kind,
                                            seed=args.seed, pooled=data["pooled"] if kind == "pooled" else None)
        feats = history.pop("features", None)
        z = (feats if feats is not None else model.features(data["u"])) @ model.vectors.T + model.bias
        log2_pred[kind] = np.clip(z, model.log2_range[:, 0], model.log2_range[:, 1])  # as LengthModel.predict
        smear[kind] = model.log2_smear
        models[kind], fits[kind] = model, history
        print(f"{kind}: {history}", flush=True)

    calib, routing, unregistered = {}, {}, []
    for key_t, t in tables.items():
        table, split = t["table"], t["split"]
        rows = split == scored
        off = data["offset"][key_t]
        cols = [data["col"][data["aliases"].get(n, n)] for n in table.model_names]
        estimates = {}
        reg, missing = registry_tokens(table, snapshot, split == "train")
        unregistered += missing
        estimates["registry (a)"] = reg
        estimates["task_mean (b)"] = task_mean_tokens(table, split == "train")
        for kind in log2_pred:
            z = log2_pred[kind][off : off + len(table)][:, cols]
            estimates[f"{kind}/median"] = np.exp2(z)
            estimates[f"{kind}/mean"] = np.exp2(z + smear[kind][cols])
        calib[key_t] = calibration({k: v[rows] for k, v in estimates.items()}, table.out_tokens[rows])
        if key_t not in ROUTED:
            continue
        sub = table.subset(rows)
        q_hat = predictor.probabilities(t["u"][rows], [predictor.model_vector(n) for n in table.model_names])
        p_in, p_out, fee = prices(table, snapshot)
        max_out = np.array([snapshot.get(n).max_output_tokens for n in table.model_names])
        estimates = {k: np.minimum(v, max_out) for k, v in estimates.items()}  # as LengthModel.predict
        c_hats = {("registry" if k.startswith("registry") else "task_mean" if k.startswith("task_mean") else k):
                  sub.in_tokens[:, None] * p_in + v[rows] * p_out + fee for k, v in estimates.items()}
        routing[key_t] = {"c_hats": c_hats, "sub": sub, "q_hat": q_hat}

    # choose on validation routing; on --test the choice recorded by the validation run is used
    choice_path = ROOT / "bench" / "results" / "output_length_study.json"
    choice_means = None
    if args.test:
        chosen = json.loads(choice_path.read_text())["chosen"]
    else:
        quick = {k: paired_routing(r["sub"].quality, r["sub"].cost, r["q_hat"], r["c_hats"], "registry", 0)
                 for k, r in routing.items()}
        chosen, choice_means = choose(quick)
    reference = args.reference or chosen
    figures = {k: paired_routing(r["sub"].quality, r["sub"].cost, r["q_hat"], r["c_hats"], reference,
                                 args.bootstrap, args.seed) for k, r in routing.items()}
    result = {"artifact": str(directory), "encoder_key": key, "split": scored, "bootstrap": args.bootstrap,
              "seed": args.seed, "chosen": chosen, "reference": reference, "fits": fits,
              "calibration": calib, "routing": figures, "unregistered": sorted(set(unregistered))}
    if choice_means is not None:
        result["choice_means"] = choice_means
    name = args.name or ("output_length_study_test" if args.test else "output_length_study")
    out = ROOT / "bench" / "results"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))

    if args.write_artifact:
        kind, form = chosen.split("/")
        model = models[kind]
        model.aliases = {a: n for a, n in data["aliases"].items() if n in data["col"]}
        model.model_tables = data["model_tables"]
        model.meta = {"count_form": form, "encoder_key": key, "tokenizer": "cl100k_base",
                      "fitted_on": "training rows of " + ", ".join(LENGTH_TABLES.values()),
                      "best_step": fits[kind]["best_step"], "seed": args.seed}
        print("wrote", save_length_model(directory, model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
