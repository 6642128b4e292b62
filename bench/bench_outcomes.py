"""Learning models from outcomes: how many outcomes a model needs before it routes like a trained-in one.

Setup (MMLU-Pro, the table of the cold-start study): the four models of docs/coldstart.md are treated
as new: registered without a trained vector, then given 100, 300, 1,000 or 3,000 outcomes each (their
real results on random *training* prompts of the table, an independent draw per model and seed), and
fitted as `pickwise fit` fits a model without a vector (`predictor.refit.fit_vectors`: MAP under the
population prior of the other trained models). Routing is scored on the held-out MMLU-Pro prompts with
all 25 models present: headroom capture, and the Brier score on the four models' columns. Compared
with registering them from their probe results (cold start) and with the artifact's own trained
vectors for them ("trained-in").

No artifact trained without these models is at hand (training takes hours on a CPU), so every router
here uses the shipped artifact, whose encoder was trained *with* these models' results: the outcome
fits see an encoder already shaped by them, which may flatter a truly new model;
bench/outcomes_heldout_twin.py removes them from everything but the encoder; docs/coldstart.md measures the same gap with a held-out artifact (fits from
training labels reach 67-83% of trained-in there).

Also measured: `pickwise fit` on a store of 100,000 outcomes (time, peak memory), in a child process.

Run: .venv/bin/python -m bench.bench_outcomes [--seeds 3] [--fit-rows 100000]
Writes bench/results/outcomes.json and .md (outcomes_trustK.* for another --trust-new, NAME.* with --name).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_coldstart import probe_scores  # noqa: E402
from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.coldstart import fit_model_vector  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.evaluate import registry_cost_estimate  # noqa: E402
from pickwise.predictor.inference import ModelVector, OutcomeEvidence, load_predictor  # noqa: E402
from pickwise.predictor.refit import TRUST_NEW, Features, OutcomeRows, fit_vectors  # noqa: E402
from pickwise.predictor.routing_metrics import routing_figures  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402
from pickwise.registry.outcomes import prompt_sha256  # noqa: E402

TABLE = "mmlu_pro_25models.parquet"
NEW = ["Llama-2-7b-hf", "Mistral-7B-Instruct-v0.2", "Yi-34B", "gemini-1.5-flash-002"]
CACHE = ROOT / ".cache" / "bench_outcomes_features.npz"


def features(predictor, prompts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u, tasks, pooled of the table's prompts (cached across runs: encoding is most of the time)."""
    key = predictor.version
    if CACHE.exists():
        data = np.load(CACHE, allow_pickle=False)
        if str(data["key"]) == key and len(data["u"]) == len(prompts):
            return data["u"], data["tasks"], data["pooled"]
    start = time.perf_counter()
    f = predictor.prompt_features(prompts, progress=True)
    print(f"encoded {len(prompts)} prompts in {time.perf_counter() - start:.0f} s", flush=True)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, key=key, u=f.u, tasks=f.tasks, pooled=f.pooled)
    return f.u, f.tasks, f.pooled


def as_new(predictor, excluded: list[int]):
    """The predictor with `excluded` trained models left out of the refit's prior population and
    unknown by name, so that `fit` finds no trained vector to start from."""
    other = copy.copy(predictor)
    keep = np.setdiff1d(np.arange(len(predictor.model_names)), excluded)
    other.trained_vectors = (predictor.trained_vectors[0][keep], predictor.trained_vectors[1][keep])
    gone = {predictor.model_names[j] for j in excluded}
    other._index = {name: j for name, j in predictor._index.items() if predictor.model_names[j] not in gone}
    return other


class BareSpec:
    """A registry entry with no vector, probe results or prior: what `fit` fits from the population."""

    probe = None

    def __init__(self, name):
        self.name = name

    def all_names(self):
        return (self.name,)


class BareSnapshot:
    def get(self, name):
        return BareSpec(name)

    def probe_scores(self, name):
        return None


def draw_outcomes(table, train_rows: np.ndarray, sha: list[str], size: int, seed: int) -> OutcomeRows:
    """`size` real results of each model of NEW on random training prompts of `table` (an independent
    draw per model; a seed always gives the same draw), as the store would hand them to `fit`."""
    rng = np.random.default_rng(seed)
    models, scores, shas = [], [], []
    for m in NEW:
        j = table.model_names.index(m)
        have = train_rows[~np.isnan(table.quality[train_rows, j])]
        for i in rng.choice(have, size=min(size, len(have)), replace=False):
            models.append(m)
            scores.append(float(table.quality[i, j]))
            shas.append(sha[i])
    return OutcomeRows(models, np.array(scores), shas, [""] * len(shas), np.full(len(shas), np.nan))


def fit_time_and_memory(table, train_rows: np.ndarray, n_rows: int, artifact: Path, predictor, u, tasks, pooled) -> dict:
    """`pickwise fit` on a store of `n_rows` outcomes (random training results of the table), in a child
    process: its wall time and peak memory, with the prompts' features cached in the store (a store's
    second fit; the first also encodes every new prompt, at the encoder's speed)."""
    from pickwise.registry.outcomes import Outcome, OutcomeStore, utc_timestamp

    rng = np.random.default_rng(0)
    cells = [(i, j) for i in train_rows for j in range(len(table.model_names)) if not np.isnan(table.quality[i, j])]
    picked = rng.choice(len(cells), size=min(n_rows, len(cells)), replace=False)
    work = Path(tempfile.mkdtemp(prefix="bench-outcomes-"))
    store_path = work / "outcomes.sqlite"
    start = time.perf_counter()
    with OutcomeStore(store_path) as store:
        batch = []
        for k, c in enumerate(picked):
            i, j = cells[c]
            batch.append(Outcome(model=table.model_names[j], score=float(table.quality[i, j]), prompt=table.prompts[i],
                                 cost_usd=float(table.cost[i, j]), timestamp=utc_timestamp(1.7e9 + k)))
        store.add(batch)
        store_seconds = time.perf_counter() - start
        blobs = {prompt_sha256(table.prompts[i]): np.concatenate([u[i], tasks[i], pooled[i]]).astype("<f4").tobytes()
                 for i in train_rows}
        store.cache_features(blobs, predictor.encoder_version)
    out = work / "fitted"
    # /usr/bin/time measures the child's own peak: a forked child's ru_maxrss starts from this
    # (large) process's, so getrusage inside it would report ours
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "pickwise.api.cli.main",
               "fit", "--store", str(store_path), "--artifact", str(artifact), "--out", str(out), "--json"]
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    rss_kb = next(int(line.split()[-1]) for line in run.stderr.splitlines() if "Maximum resident set size" in line)
    report = json.loads(run.stdout)
    shutil.rmtree(work, ignore_errors=True)
    return {"outcomes": int(len(picked)), "prompts": report["outcomes"]["prompts"],
            "models": len(report["models"]), "store_write_seconds": round(store_seconds, 2),
            "fit_command_seconds": round(wall, 2), "peak_rss_mb": round(rss_kb / 1024),
            "fit_report_seconds": report["seconds"], "holdout": report["holdout"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", default=str(default_artifact_dir()))
    parser.add_argument("--sizes", default="100,300,1000,3000")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fit-rows", type=int, default=100_000, help="outcomes in the fit-time store (0 skips)")
    parser.add_argument("--trust-new", type=float, default=TRUST_NEW,
                        help="the prior's weight on the new models' fits (docs/decisions/outcome-prior.md)")
    parser.add_argument("--name", default=None, help="results file stem (default: outcomes[_trustK])")
    args = parser.parse_args()

    table = load_table(default_data_dir() / TABLE)
    snapshot = load_registry(default_registry_dir())
    predictor = load_predictor(args.artifact, "cpu")
    names = table.model_names
    split = predictor.row_split(table)
    train_rows, test = np.flatnonzero(split == "train"), split == "test"
    u, tasks, pooled = features(predictor, list(table.prompts))
    u = u.astype(np.float64)
    sub = table.subset(test)
    c_hat = registry_cost_estimate(table, snapshot)[test]
    ut, tt, pt = u[test], tasks[test], pooled[test]
    excluded = [predictor.trained_index(m) for m in NEW]
    fitter = as_new(predictor, excluded)
    trained = [predictor.model_vector(m) for m in names]
    print(f"{int(test.sum())} held-out prompts, {len(train_rows)} training prompts; new models: {NEW}", flush=True)

    def routed(replace: dict[str, tuple[np.ndarray, float]], placed: dict | None = None,
               outcomes: dict | None = None) -> np.ndarray:
        """Select's qualities with `replace`d models' vectors; `placed`: their probe evidence (task rows,
        ability), which gives a probe-registered model its support and place on the scale as serving does;
        `outcomes`: their outcome evidence as `fit` stores it, which does the same for a refitted model."""
        def vector(m):
            if placed:
                return ModelVector(m, *replace[m], "probe", task_rows=placed[m][0], ability=placed[m][1])
            evidence = (outcomes or {}).get(m)
            return ModelVector(m, *replace[m], "outcomes", outcomes=evidence and OutcomeEvidence.from_dict(
                evidence, len(predictor.scale.tasks), m))
        vectors = [vector(m) if m in replace else v for m, v in zip(names, trained)]
        return predictor.evidence(ut, vectors, tt, pooled=pt).quality

    cols = [names.index(m) for m in NEW]
    obs = ~np.isnan(sub.quality[:, cols])

    def scored(q: np.ndarray) -> dict:
        r = routing_figures(sub.quality, sub.cost, c_hat, {"r": q}, names, n_bootstrap=0).routers["r"]
        brier = float(np.mean((q[:, cols][obs] - sub.quality[:, cols][obs]) ** 2))
        return {"capture": float(r.capture), "brier_new_models": brier}

    reference = {"trained-in": scored(routed({}))}
    # cold start from probe results, as `models add` would do it (same-table prior, these models left out)
    probe_ids, probe_u = predictor.probe_vectors()
    position = {p: i for i, p in enumerate(probe_ids)}
    ref = np.setdiff1d(predictor.reference_models([table.name]), excluded)
    probe_fit, probe_place = {}, {}
    for m in NEW:
        scores = probe_scores(table, m)
        probe_place[m] = predictor.probe_evidence(scores)
        ids = [p for p in scores if p in position]
        probe_fit[m] = fit_model_vector(probe_u[[position[p] for p in ids]].astype(np.float64),
                                        np.array([scores[p] for p in ids]), predictor._vectors[ref],
                                        predictor._bias[ref], predictor.temperature)
    reference["probe results (cold start)"] = scored(routed(probe_fit, probe_place))
    reference["population prior (no results)"] = scored(routed(
        {m: (fitter.trained_vectors[0].mean(0), float(fitter.trained_vectors[1].mean())) for m in NEW}))
    for k, v in reference.items():
        print(f"{k}: capture {v['capture']:.4f}, Brier {v['brier_new_models']:.4f}", flush=True)

    sha = [prompt_sha256(p) for p in table.prompts]
    feats = Features(u={sha[i]: u[i] for i in train_rows}, tasks={sha[i]: tasks[i] for i in train_rows},
                     pooled={sha[i]: pooled[i] for i in train_rows})
    curve = []
    for size in [int(s) for s in args.sizes.split(",")]:
        runs = []
        for seed in range(args.seeds):
            rows = draw_outcomes(table, train_rows, sha, size, seed)
            start = time.perf_counter()
            fitted = fit_vectors(fitter, BareSnapshot(), rows, feats, np.ones(len(rows), dtype=bool),
                                 trust_new=args.trust_new)
            if any(f["before"] != "population" for f in fitted.values()):
                raise SystemExit(f"expected population-prior fits, got {fitted}")
            seconds = time.perf_counter() - start
            runs.append({**scored(routed({m: (np.array(f["vector"]), f["bias"]) for m, f in fitted.items()},
                                         outcomes={m: f.get("evidence") for m, f in fitted.items()})),
                         "fit_seconds_all_models": seconds})
        point = {"outcomes_per_model": size, "runs": len(runs),
                 "capture_mean": float(np.mean([r["capture"] for r in runs])),
                 "capture_std": float(np.std([r["capture"] for r in runs])),
                 "brier_mean": float(np.mean([r["brier_new_models"] for r in runs])),
                 "fit_seconds": float(np.mean([r["fit_seconds_all_models"] for r in runs]))}
        point["share_of_trained_in"] = point["capture_mean"] / reference["trained-in"]["capture"]
        curve.append(point)
        print(f"{size:>5} outcomes each: capture {point['capture_mean']:.4f} ± {point['capture_std']:.4f} "
              f"({point['share_of_trained_in']:.1%} of trained-in), Brier {point['brier_mean']:.4f}", flush=True)

    scale = None
    if args.fit_rows:
        scale = fit_time_and_memory(table, train_rows, args.fit_rows, Path(args.artifact), predictor, u, tasks, pooled)
        print(f"fit at {scale['outcomes']:,} outcomes: {scale['fit_command_seconds']} s, "
              f"peak RSS {scale['peak_rss_mb']} MB", flush=True)

    report = {"table": TABLE, "new_models": NEW, "n_test_prompts": int(test.sum()), "artifact": args.artifact,
              "trust_new": args.trust_new, "reference": reference, "by_outcomes": curve, "fit_at_scale": scale,
              "note": "every router uses the shipped artifact, trained with these models' results (see module doc)",
              "command": "python -m bench.bench_outcomes " + " ".join(sys.argv[1:])}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or "outcomes" + ("" if args.trust_new == TRUST_NEW else f"_trust{args.trust_new:g}")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    lines = [f"MMLU-Pro held-out prompts: {report['n_test_prompts']}; models learned from outcomes: {', '.join(NEW)}",
             "", "| router | capture | share of trained-in | Brier (the four models) |", "|---|---|---|---|"]
    t = reference["trained-in"]["capture"]
    for k, v in reference.items():
        lines.append(f"| {k} | {v['capture']:.4f} | {v['capture'] / t:.1%} | {v['brier_new_models']:.4f} |")
    for p in curve:
        lines.append(f"| {p['outcomes_per_model']:,} outcomes each (mean ± sd of {p['runs']}) | "
                     f"{p['capture_mean']:.4f} ± {p['capture_std']:.4f} | {p['share_of_trained_in']:.1%} | "
                     f"{p['brier_mean']:.4f} |")
    if scale:
        lines += ["", f"`pickwise fit` on {scale['outcomes']:,} outcomes ({scale['prompts']:,} prompts, "
                      f"{scale['models']} models), features cached: {scale['fit_command_seconds']} s for the "
                      f"command (of which reading and fitting {scale['fit_report_seconds']['total']} s, "
                      f"the MAP fits {scale['fit_report_seconds']['fit']} s), peak RSS {scale['peak_rss_mb']} MB; "
                      f"storing them: {scale['store_write_seconds']} s"]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
