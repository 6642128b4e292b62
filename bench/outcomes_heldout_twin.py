"""Learning models from outcomes on a held-out twin: a prompt head that never saw the four models.

bench/bench_outcomes.py fits the four models of the cold-start study from outcomes on the shipped
artifact, whose encoder was trained with their results, so its shares of trained-in are an upper
bound. Retraining the LoRA encoder without them takes hours on a CPU; this measures the part that
fits on one, on the frozen encoder's cached pooled embeddings (bench/one_scale_features.py):

- a prompt head of the artifact's IRT form, logit = (u . e_m + b_m) / T, with u from the artifact's
  own kind of head: the product's TaskMixture (u = sum_k p(task k | pooled) t_k over the artifact's 33
  tasks; no subtasks, whose labels are not cached), its classifier trained with the task
  cross-entropy, trained with `pickwise train`'s head settings (AdamW, lr 2e-3, weight decay 1e-4,
  batches of 64, no warm-up or decay; masked BCE on the training rows of the four priced tables,
  early stopping on validation loss with patience 3, temperature fitted on validation rows, fixed
  seeds). All four tables, so that the outcome fits' prior population is every other trained model,
  as it is for `pickwise fit`. `--head linear|mlp` swaps in Linear(LayerNorm(pooled)) or the product's
  PromptHead (the task head was chosen on the validation rows: the other two route far below the
  shipped artifact there, too weak a reference for shares of it to mean much);
- trained twice per head seed, from that seed: **twin-all** (all models: the "trained-in" reference) and
  **twin-heldout** (the four models' columns removed, so neither the head nor the other vectors
  ever see their results);
- on twin-heldout the four are learned as `pickwise fit` learns a model without a vector
  (`predictor.refit.fit_vectors`: MAP under the population prior of the other models' vectors) from
  N of their real results on random MMLU-Pro training prompts each, several seeds; also registered
  from their probe results (`fit_results`, the same-table prior, as `models add` does) and scored
  from the population prior alone.

Routing is scored on the held-out MMLU-Pro prompts (the test split by default, as bench_outcomes
does; the heads stop on validation rows) with all 25 models: headroom capture (registry cost
estimate, as bench_outcomes), with paired bootstrap intervals of router - twin-all, and the Brier
score on the four models' columns. The shipped artifact is scored on the same rows, so the twins'
own level is known. What this does not measure: the LoRA encoder, which was trained with the four
models (the pooled embeddings come from it).

Run: .venv/bin/python -m bench.outcomes_heldout_twin [--seeds 5] [--head-seeds 0,1,2] [--split test]
Writes bench/results/outcomes_heldout_twin.json and .md (with --split val: ..._val.json/.md).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_coldstart import probe_scores  # noqa: E402
from bench.bench_outcomes import NEW, TABLE, BareSnapshot, BareSpec, draw_outcomes  # noqa: E402
from bench.compare_artifacts import PRICED_TABLES  # noqa: E402
from bench.one_scale_features import load_features  # noqa: E402
from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.calibration import fit_temperature, masked_bce  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.evaluate import registry_cost_estimate  # noqa: E402
from pickwise.predictor.inference import ModelVector, load_predictor  # noqa: E402
from pickwise.predictor.model import PromptHead, TaskMixture  # noqa: E402
from pickwise.predictor.refit import TRUST_NEW, Features, fit_vectors  # noqa: E402
from pickwise.predictor.routing_metrics import routing_figures  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402
from pickwise.registry.outcomes import prompt_sha256  # noqa: E402

TRAINED_IN = "trained-in (twin-all)"
SHIPPED = "shipped artifact"
PROBE = "probe results (cold start)"
PRIOR = "population prior (no results)"
GOAL = 0.90  # share of trained-in capture the issue asks for at 1,000 outcomes each


HEADS = ("linear", "mlp", "tasks")
HEAD_TEXT = {"linear": "u = Linear(LayerNorm(pooled)), 384 -> 64",
             "mlp": "u = PromptHead(pooled), 384 -> 256 -> 64",
             "tasks": "u = TaskMixture(pooled), 33 task vectors of 64 (no subtasks)"}


class TwinHead(torch.nn.Module):
    """u = head(pooled); logits = u e^T + b: the artifact's IRT form on frozen features. Heads: "linear",
    Linear(LayerNorm(pooled)); "mlp", the product's PromptHead (one hidden layer of 256); "tasks", the
    product's TaskMixture over the artifact's 33 tasks (no subtasks), its classifier trained with the
    task cross-entropy as `pickwise train` does."""

    def __init__(self, kind: str, width: int, dim: int, n_models: int, n_tasks: int):
        super().__init__()
        self.kind = kind
        if kind == "linear":
            self.net = torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, dim))
        elif kind == "mlp":
            self.net = PromptHead(width, 256, dim, 0.1)
        else:
            self.net = TaskMixture(width, 256, dim, n_tasks, 0, 0.1)
        self.e = torch.nn.Parameter(torch.randn(n_models, dim) * 0.1)  # as QualityModel initialises them
        self.b = torch.nn.Parameter(torch.zeros(n_models))

    def outputs(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(u, task logits or None)."""
        if self.kind != "tasks":
            return self.net(pooled), None
        task_logits, subtask_logits = self.net.logits(pooled)
        return self.net.mix(task_logits, subtask_logits), task_logits

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.outputs(pooled)[0] @ self.e.T + self.b


def train_head(kind: str, pooled: np.ndarray, labels: np.ndarray, tasks: np.ndarray, split: np.ndarray, seed: int,
               *, dim: int = 64, epochs: int = 100, patience: int = 3, batch_size: int = 64, lr: float = 2e-3,
               weight_decay: float = 1e-4) -> dict:
    """A TwinHead fitted to `labels` [N, models] (NaN: no result; plus the task cross-entropy for "tasks",
    `tasks` [N] task indices) on the training rows, stopped on the validation loss (best state kept),
    then its temperature fitted on the validation rows."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    has = ~np.isnan(labels).all(1)
    train, val = np.flatnonzero((split == "train") & has), np.flatnonzero((split == "val") & has)
    x, y = torch.as_tensor(pooled, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.float32)
    target = torch.as_tensor(tasks, dtype=torch.long)
    head = TwinHead(kind, x.shape[1], dim, y.shape[1], int(tasks.max()) + 1)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)

    def loss_of(rows) -> torch.Tensor:
        u, task_logits = head.outputs(x[rows])
        loss = masked_bce(u @ head.e.T + head.b, y[rows])
        if task_logits is not None:
            loss = loss + torch.nn.functional.cross_entropy(task_logits, target[rows])
        return loss

    best = (math.inf, None, 0)
    for epoch in range(1, epochs + 1):
        head.train()
        order = rng.permutation(train)
        for s in range(0, len(order), batch_size):
            loss = loss_of(order[s:s + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        head.eval()
        with torch.no_grad():
            val_loss = float(masked_bce(head(x[val]), y[val]))  # the quality loss alone, as `train` stops on
        if val_loss < best[0] - 1e-4:
            best = (val_loss, copy.deepcopy(head.state_dict()), epoch)
        elif epoch - best[2] >= patience:
            break
    head.load_state_dict(best[1])
    head.eval()
    with torch.no_grad():
        temperature = fit_temperature(head(x[val]).numpy(), labels[val])
    return {"head": head, "vectors": head.e.detach().numpy().astype(np.float64),
            "bias": head.b.detach().numpy().astype(np.float64), "temperature": temperature,
            "val_loss": best[0], "best_epoch": best[2], "epochs_run": epoch, "train_rows": len(train),
            "seconds": time.perf_counter() - start}


@torch.no_grad()
def prompt_vectors(twin: dict, pooled: np.ndarray) -> np.ndarray:
    return twin["head"].outputs(torch.as_tensor(pooled, dtype=torch.float32))[0].numpy().astype(np.float64)


def twin_predictor(base, names: list[str], twin: dict):
    """`base` (a QualityPredictor) scoring exactly the models `names` from the twin's vectors, without
    the one-scale layer, so that the product's own model_vector / fit_results / fit_vectors run on it."""
    other = copy.copy(base)
    other.model_names = list(names)
    other._index = {m: j for j, m in enumerate(names)}
    for alias, name in base.meta.get("aliases", {}).items():  # the tables' names for the artifact's models
        if name in other._index:
            other._index.setdefault(alias, other._index[name])
    other._vectors, other._bias = twin["vectors"], twin["bias"]
    other.trained_vectors = (other._vectors, other._bias)
    other.temperature = twin["temperature"]
    other.scale = None
    other._outcome, other._fitted = {}, {}
    return other


def summary(values: list[float]) -> tuple[float, float]:
    """Mean and sample sd (0 for one value)."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


class Setup:
    """What every head seed shares: the artifact, cached features, the MMLU-Pro rows and their costs."""

    def __init__(self, args):
        self.args = args
        self.predictor = load_predictor(args.artifact, "cpu", precision="fp32")
        self.priced = load_features(self.predictor)["priced"]
        snapshot = load_registry(default_registry_dir())
        self.everyone = list(self.predictor.model_names)
        excluded = [self.predictor.trained_index(m) for m in NEW]
        self.others = [j for j in range(len(self.everyone)) if j not in excluded]
        position = {t: k for k, t in enumerate(self.predictor.meta["tasks"])}
        unknown = set(self.priced["task"]) - set(position)
        if unknown:
            raise SystemExit(f"cached rows have tasks the artifact does not know: {sorted(unknown)[:5]}")
        self.task_index = np.array([position[t] for t in self.priced["task"]])
        # the table's rows in the cache: one block, in table order (as one_scale_features wrote them)
        self.table = table = load_table(default_data_dir() / TABLE)
        self.block = np.flatnonzero(self.priced["table"] == list(PRICED_TABLES).index(table.name))
        if not np.array_equal(self.priced["row"][self.block], np.arange(len(table))):
            raise SystemExit(f"cached features of {table.name} are not in table order; rebuild the cache")
        split = self.predictor.row_split(table)
        if not np.array_equal(self.priced["split"][self.block], split.astype(str)):
            raise SystemExit(f"cached split of {table.name} differs from the artifact's; rebuild the cache")
        self.scored_rows, self.train_rows = np.flatnonzero(split == args.split), np.flatnonzero(split == "train")
        self.sub = table.subset(split == args.split)
        self.c_hat = registry_cost_estimate(table, snapshot)[split == args.split]
        self.sha = [prompt_sha256(p) for p in table.prompts]
        cols = [table.model_names.index(m) for m in NEW]
        self.cols, self.obs = cols, ~np.isnan(self.sub.quality[:, cols])
        p, names, rows = self.predictor, table.model_names, self.scored_rows
        self.shipped = p.evidence(self.priced["u"][self.block][rows], [p.model_vector(m) for m in names],
                                  self.priced["tasks"][self.block][rows],
                                  pooled=self.priced["pooled"][self.block][rows]).quality


def one_head_seed(setup: Setup, head_seed: int) -> dict:
    """Both twins from `head_seed`, every router of the module doc on them, scored with paired intervals."""
    args, priced, table = setup.args, setup.priced, setup.table
    names = table.model_names
    twins, u, predictors = {}, {}, {}
    pooled = priced["pooled"][setup.block]
    for label, columns in (("twin-all", list(range(len(setup.everyone)))), ("twin-heldout", setup.others)):
        t = train_head(args.head, priced["pooled"], priced["labels"][:, columns], setup.task_index,
                       priced["split"], head_seed)
        predictors[label] = twin_predictor(setup.predictor, [setup.everyone[j] for j in columns], t)
        u[label] = prompt_vectors(t, pooled)
        twins[label] = {k: v for k, v in t.items() if k not in ("head", "vectors", "bias")} | {"models": len(columns)}
        print(f"head seed {head_seed}, {label}: {len(columns)} models, best epoch {t['best_epoch']} of "
              f"{t['epochs_run']}, val BCE {t['val_loss']:.4f}, T {t['temperature']:.3f}, {t['seconds']:.0f} s",
              flush=True)
    held, u_held = predictors["twin-heldout"], u["twin-heldout"]

    def routed(label: str, replace: dict[str, tuple[np.ndarray, float]]) -> np.ndarray:
        twin = predictors[label]
        vectors = [ModelVector(m, *replace[m], "outcomes") if m in replace else twin.model_vector(m) for m in names]
        return twin.evidence(u[label][setup.scored_rows], vectors, None).quality

    predictions = {TRAINED_IN: routed("twin-all", {}), SHIPPED: setup.shipped}
    # cold start as `models add` does it: probe results, the same-table prior of the twin's other models
    row_of = {pid: i for i, pid in enumerate(table.prompt_ids)}
    probe_fit = {}
    for m in NEW:
        scores = probe_scores(table, m)
        rows = [row_of[p] for p in scores]
        probe_fit[m] = held.fit_results(u_held[rows], np.array(list(scores.values())), tables=[table.name])
    predictions[PROBE] = routed("twin-heldout", probe_fit)
    population = {m: held.model_vector(BareSpec(m), BareSnapshot()) for m in NEW}
    predictions[PRIOR] = routed("twin-heldout", {m: (v.vector, v.bias) for m, v in population.items()})

    feats = Features(u={setup.sha[i]: u_held[i] for i in setup.train_rows}, tasks={}, pooled={})
    fit_seconds = []
    for size in args.sizes:
        for seed in range(args.seeds):
            rows = draw_outcomes(table, setup.train_rows, setup.sha, size, seed)
            start = time.perf_counter()
            fitted = fit_vectors(held, BareSnapshot(), rows, feats, np.ones(len(rows), dtype=bool), trust_new=args.trust_new)
            fit_seconds.append(time.perf_counter() - start)
            if any(f["before"] != "population" for f in fitted.values()):
                raise SystemExit(f"expected population-prior fits, got {fitted}")
            predictions[f"{size} outcomes, seed {seed}"] = routed(
                "twin-heldout", {m: (np.array(f["vector"]), f["bias"]) for m, f in fitted.items()})

    figures = routing_figures(setup.sub.quality, setup.sub.cost, setup.c_hat, predictions, names,
                              reference=TRAINED_IN, n_bootstrap=args.bootstrap, seed=0)
    base = figures.routers[TRAINED_IN].capture
    truth = setup.sub.quality[:, setup.cols][setup.obs]

    def scored(key: str) -> dict:
        r, q = figures.routers[key], predictions[key]
        out = {"capture": r.capture, "share_of_trained_in": r.capture / base,
               "brier_new_models": float(np.mean((q[:, setup.cols][setup.obs] - truth) ** 2)),
               "brier_all_models": r.brier}
        if r.capture_diff_bootstrap is not None:  # trained-in − router: turned round to router − trained-in
            d = r.capture_diff_bootstrap
            out["minus_trained_in"] = {"point": r.capture - base, "std": d.std, "lo": -d.hi, "hi": -d.lo}
        return out

    result = {"head_seed": head_seed, "twins": twins, "n_prompts": figures.n_prompts,
              "reference": {k: scored(k) for k in (TRAINED_IN, SHIPPED, PROBE, PRIOR)},
              "by_outcomes": {size: [scored(f"{size} outcomes, seed {s}") for s in range(args.seeds)]
                              for size in args.sizes},
              "fit_seconds_mean": float(np.mean(fit_seconds))}
    for k, v in result["reference"].items():
        print(f"  {k}: capture {v['capture']:.4f} ({v['share_of_trained_in']:.1%}), Brier four "
              f"{v['brier_new_models']:.4f}, all {v['brier_all_models']:.4f}", flush=True)
    for size, runs in result["by_outcomes"].items():
        share = summary([r["share_of_trained_in"] for r in runs])
        print(f"  {size:>5} outcomes each: {share[0]:.1%} ± {share[1]:.1%} of trained-in", flush=True)
    return result


def aggregate(runs: list[dict]) -> dict:
    """Mean ± sd of capture and share over `runs`; the paired intervals: how many lie wholly below 0."""
    cap, share = summary([r["capture"] for r in runs]), summary([r["share_of_trained_in"] for r in runs])
    out = {"runs": len(runs), "capture_mean": cap[0], "capture_sd": cap[1], "share_mean": share[0],
           "share_sd": share[1], "brier_new_models_mean": float(np.mean([r["brier_new_models"] for r in runs])),
           "brier_all_models_mean": float(np.mean([r["brier_all_models"] for r in runs]))}
    diffs = [r["minus_trained_in"] for r in runs if "minus_trained_in" in r]
    if diffs:
        out |= {"minus_trained_in_mean": float(np.mean([d["point"] for d in diffs])),
                "intervals_below_zero": sum(d["hi"] < 0 for d in diffs),
                "intervals_above_zero": sum(d["lo"] > 0 for d in diffs),
                "interval_sd_mean": float(np.mean([d["std"] for d in diffs]))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", default=str(default_artifact_dir()))
    parser.add_argument("--sizes", default="100,300,1000,3000")
    parser.add_argument("--seeds", type=int, default=5, help="outcome draws per size")
    parser.add_argument("--head", default="tasks", choices=HEADS, help="the twins' prompt head (see TwinHead)")
    parser.add_argument("--head-seeds", default="0,1,2", help="a pair of twins per seed (the twin is a draw too)")
    parser.add_argument("--split", default="test", choices=("test", "val"), help="the MMLU-Pro rows scored")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired resamples of the scored prompts")
    parser.add_argument("--trust-new", type=float, default=TRUST_NEW,
                        help="the prior's weight on the new models' outcome fits (docs/decisions/outcome-prior.md)")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    torch.set_num_threads(1)  # a small head; the machine is shared

    setup = Setup(args)
    print(f"{len(setup.scored_rows)} {args.split} MMLU-Pro prompts scored; new models: {NEW}", flush=True)
    per_seed = [one_head_seed(setup, int(s)) for s in args.head_seeds.split(",")]
    reference = {k: aggregate([r["reference"][k] for r in per_seed]) for k in (TRAINED_IN, SHIPPED, PROBE, PRIOR)}
    curve = [{"outcomes_per_model": size, **aggregate([x for r in per_seed for x in r["by_outcomes"][size]]),
              "share_by_head_seed": [summary([x["share_of_trained_in"] for x in r["by_outcomes"][size]])[0]
                                     for r in per_seed]}
             for size in args.sizes]
    goal = None
    if 1000 in args.sizes:
        runs = [x for r in per_seed for x in r["by_outcomes"][1000]]
        at = next(p for p in curve if p["outcomes_per_model"] == 1000)
        goal = {"goal": GOAL, "share_mean": at["share_mean"], "share_sd": at["share_sd"],
                "share_by_head_seed": at["share_by_head_seed"], "met": bool(at["share_mean"] >= GOAL),
                "runs_meeting": sum(x["share_of_trained_in"] >= GOAL for x in runs), "runs": len(runs)}
    report = {"table": TABLE, "split": args.split, "n_prompts": per_seed[0]["n_prompts"], "new_models": NEW,
              "artifact": str(args.artifact), "head": HEAD_TEXT[args.head], "head_seeds": args.head_seeds,
              "outcome_seeds": args.seeds, "trust_new": args.trust_new, "reference": reference, "by_outcomes": curve, "goal_at_1000": goal,
              "per_head_seed": per_seed,
              "bootstrap": {"resamples": args.bootstrap, "seed": 0, "interval": 0.95, "unit": "scored prompt"},
              "command": "python -m bench.outcomes_heldout_twin " + " ".join(sys.argv[1:])}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = ("outcomes_heldout_twin" + ("" if args.split == "test" else f"_{args.split}")
            + f"_trust{args.trust_new:g}")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    (out / f"{stem}.md").write_text(md)
    print(md)
    return 0


def markdown(report: dict) -> str:
    h = len(report["per_head_seed"])
    lines = [f"MMLU-Pro {report['split']} prompts: {report['n_prompts']}, all 25 models routed; learned from outcomes "
             f"on the held-out twin: {', '.join(report['new_models'])}. Head: {report['head']}. {h} pairs of twins "
             f"(head seeds {report['head_seeds']}) × {report['outcome_seeds']} outcome draws; share = capture / the "
             f"same head seed's twin-all capture.", "",
             "| router | capture | share of trained-in | router − trained-in: mean, paired 95% intervals wholly "
             "below 0 / above 0 | Brier (the four) |", "|---|---|---|---|---|"]

    def row(label: str, a: dict) -> str:
        d = "–" if "minus_trained_in_mean" not in a else (
            f"{a['minus_trained_in_mean']:+.4f}; {a['intervals_below_zero']} / {a['intervals_above_zero']} of {a['runs']}")
        return (f"| {label} | {a['capture_mean']:.4f} ± {a['capture_sd']:.4f} | {a['share_mean']:.1%} ± "
                f"{a['share_sd']:.1%} | {d} | {a['brier_new_models_mean']:.4f} |")

    lines += [row(f"{k} (mean ± sd of {h})", a) for k, a in report["reference"].items()]
    lines += [row(f"{p['outcomes_per_model']:,} outcomes each (mean ± sd of {p['runs']})", p)
              for p in report["by_outcomes"]]
    g = report["goal_at_1000"]
    if g:
        by = ", ".join(f"{x:.1%}" for x in g["share_by_head_seed"])
        lines += ["", f"Goal (≥ {g['goal']:.0%} of trained-in capture with 1,000 outcomes each, on a head that never "
                      f"saw the models): **{'met' if g['met'] else 'not met'}**: {g['share_mean']:.1%} ± "
                      f"{g['share_sd']:.1%} (by head seed: {by}; {g['runs_meeting']} of {g['runs']} runs at or above)."]
    lines += ["", "| head seed | twin-all capture | shipped artifact capture | twin-all Brier (all 25) | shipped Brier "
                  "(all 25) | twin best epochs (all / heldout) |", "|---|---|---|---|---|---|"]
    for r in report["per_head_seed"]:
        ref = r["reference"]
        lines.append(f"| {r['head_seed']} | {ref[TRAINED_IN]['capture']:.4f} | {ref[SHIPPED]['capture']:.4f} | "
                     f"{ref[TRAINED_IN]['brier_all_models']:.4f} | {ref[SHIPPED]['brier_all_models']:.4f} | "
                     f"{r['twins']['twin-all']['best_epoch']} / {r['twins']['twin-heldout']['best_epoch']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
