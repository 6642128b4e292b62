"""One scale across the pool (issue #21): ordering reversals, routing figures, set calibration, decisions.

Frozen encoder: the features of every priced row, AlpacaEval and bench/everyday_prompts.jsonl come
from bench/one_scale_features.py (cached under .cache/one_scale). The scale is fitted on training
rows; candidates are chosen on validation rows and the everyday prompts (docs/decisions/one-scale.md);
`--split test` reads the test rows once to report.

Run: .venv/bin/python -m bench.one_scale_study [--split val|test] [--choose a,b] [--write]
(--write stores the last chosen scale into the shipped artifact). Writes bench/results/one_scale_study.{json,md}.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.compare_artifacts import PRICED_TABLES  # noqa: E402
from bench.density_detector import DensityScale, fit_density_detector  # noqa: E402
from bench.one_scale_features import ALPACA, load_features  # noqa: E402
from bench.scale_candidates import TaskCalibratedScale, calibrated, fit_task_calibration, twin_rows  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.evaluate import registry_cost_estimate  # noqa: E402
from pickwise.predictor.inference import load_predictor  # noqa: E402
from pickwise.predictor.routing_metrics import ece as ece_score  # noqa: E402
from pickwise.predictor.routing_metrics import routing_figures  # noqa: E402
from pickwise.predictor.scale import (  # noqa: E402
    ALPACA_LINKS,
    dominance_pairs,
    fit_bank_detector,
    fit_detector,
    fit_one_scale,
    fit_set_rho,
    set_quality,
    sigmoid,
)
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402

# rounds 1-9: docs/decisions/one-scale.md (round 1: detector on [u, posterior] only, tau 1 / 0.5;
# round 2: + pooled embedding, table-balanced negatives; round 3: gate, temperature; round 4: no
# base-model penalty in the probabilities, the pool rule instead; round 5: density detector;
# round 6: round 3's detector + s_nn, and the density test on u; round 7: round 6's detector with
# AlpacaEval positives that sit among priced prompts left out; round 8: round 7 with twin tasks'
# rows as support, and/or without the base penalty in the probabilities; round 9: round 8's
# `scale8-nopen` with a per-task temperature (and offset) on top; round 10: the same per table)
STUDY_ONLY = {"density", "density-u"}  # detectors the serving layer does not have
CANDIDATES = {"scale3-gate-T": {"tau": 0.5, "open_gate": 0.5},
              "scale4-pool-rule": {"tau": 0.5, "open_gate": 0.5, "base_penalty": False},
              "scale5-density": {"tau": 0.5, "open_gate": 0.5, "detector": "density"},
              "scale6-both": {"tau": 0.5, "open_gate": 0.5, "detector": "both"},
              "scale6-u": {"tau": 0.5, "open_gate": 0.5, "detector": "density-u"},
              "scale7-clean-bal": {"tau": 0.5, "open_gate": 0.5, "detector": "both", "clean": "balanced"},
              "scale7-clean-raw": {"tau": 0.5, "open_gate": 0.5, "detector": "both", "clean": "raw"}}
ROUND7 = CANDIDATES["scale7-clean-raw"]
CANDIDATES |= {"scale8-twins": {**ROUND7, "twins": True},
               "scale8-nopen": {**ROUND7, "base_penalty": False},
               "scale8-twins-nopen": {**ROUND7, "twins": True, "base_penalty": False}}
ROUND8 = CANDIDATES["scale8-nopen"]
CANDIDATES |= {"scale9-taskT": {**ROUND8, "task_cal": "T"}, "scale9-taskTb": {**ROUND8, "task_cal": "Tb"},
               "scale10-tableT": {**ROUND8, "task_cal": "tableT"}, "scale10-tableTb": {**ROUND8, "task_cal": "tableTb"}}
REFIT_TEMPERATURE = {"scale9-taskT", "scale9-taskTb", "scale10-tableT", "scale10-tableTb", "scale3-gate-T", "scale4-pool-rule", "scale5-density", "scale6-both", "scale6-u",
                     "scale7-clean-bal", "scale7-clean-raw", "scale8-twins", "scale8-nopen", "scale8-twins-nopen"}
BANK_PER_TABLE, BANK_SEED, BANK_K = 1000, 0, 10  # round 5's density bank (round 6 reuses it)
SHIPPED = "shipped"
DECISIONS = [
    ("poem", "Write a short poem about the sea at dawn.", "max_quality"),
    ("hi", "hi, how are you?", "max_quality"),
    ("number theory", "Prove that for every prime p > 3, p^2 - 1 is divisible by 24.", "min_quality 0.7"),
]
# what a user tries first (docs/decisions/one-scale.md, the detector's known weakness): p_open and select
PROBES = [
    ("capital", "What is the capital of Australia?"),
    ("poem", "Write a short poem about the sea at dawn."),
    ("hi", "hi, how are you?"),
    ("contract", "Is a verbal agreement to sell a house legally binding, or does the contract have to be in writing?"),
    ("python bug", "Why does my Python function return None instead of the list? def f(xs): xs.sort()"),
]


def alpaca_table():
    import pandas as pd

    frame = pd.read_parquet(default_data_dir() / f"{ALPACA}.parquet")
    models = [c[3:] for c in frame.columns if c.startswith("q__")]
    quality = frame[[f"q__{m}" for m in models]].to_numpy(np.float64)
    held = np.array([int(hashlib.sha1(str(p).encode()).hexdigest()[:8], 16) % 10 < 3 for p in frame["prompt_id"]])
    return models, quality, held


def bank_rows(feats) -> np.ndarray:
    """Round 5's bank: BANK_PER_TABLE random training prompts per priced table (seed BANK_SEED)."""
    pr = feats["priced"]
    train = pr["split"] == "train"
    rng = np.random.default_rng(BANK_SEED)
    return np.concatenate([rng.choice(np.flatnonzero(train & (pr["table"] == t)), BANK_PER_TABLE, replace=False)
                           for t in range(len(PRICED_TABLES))])


def priced_texts(feats) -> np.ndarray:
    """The prompt text of every priced row of the features, from the tables themselves."""
    pr = feats["priced"]
    texts = np.empty(len(pr["row"]), object)
    for k, stem in enumerate(PRICED_TABLES):
        mine = pr["table"] == k
        texts[mine] = np.array(load_table(default_data_dir() / f"{stem}.parquet").prompts, object)[pr["row"][mine]]
    return texts


def negative_rows(split: np.ndarray, bank: np.ndarray, texts: np.ndarray | None = None) -> np.ndarray:
    """Training rows outside the bank; given the rows' `texts` (round 6), also none whose text is a
    bank prompt's (a duplicate would find itself in the bank at similarity 1)."""
    keep = (split == "train") & ~np.isin(np.arange(len(split)), bank)
    if texts is not None:
        keep &= ~np.isin(texts, np.unique(texts[bank]))
    return np.flatnonzero(keep)


def density_detector(feats, held: np.ndarray, space: str = "pooled") -> tuple[dict, np.ndarray]:
    """Round 5 (pooled) and round 6's `scale6-u` (u): the density test on the bank; negatives are the
    other training prompts (each table weighing the same; round 6 drops the bank's duplicates by
    text), positives AlpacaEval's training ones."""
    pr = feats["priced"]
    bank = bank_rows(feats)
    neg = negative_rows(pr["split"], bank, priced_texts(feats) if space == "u" else None)
    return fit_density_detector(pr[space][bank], feats["alpaca"][space][~held], pr[space][neg],
                                neg_groups=pr["table"][neg], k=BANK_K)


def priced_like(feats, held: np.ndarray, balanced: bool) -> np.ndarray:
    """Round 7: which AlpacaEval training instructions sit among priced prompts ([n_train] bool).

    Each one's BANK_K nearest neighbours (pooled cosine) among the bank and the *other* AlpacaEval
    training instructions vote; it is priced-like when the priced share of the vote is at least a
    half, each priced vote weighing len(alpaca)/len(bank) of an AlpacaEval vote if `balanced`."""
    from pickwise.predictor.scale import stored_bank

    pr, al = feats["priced"], feats["alpaca"]
    bank = stored_bank(pr["pooled"][bank_rows(feats)])
    own = stored_bank(al["pooled"][~held])
    sims = np.hstack([own @ bank.T, own @ own.T])
    sims[:, len(bank):][np.diag_indices(len(own))] = -np.inf  # not itself
    nearest = np.argpartition(sims, -BANK_K, axis=1)[:, -BANK_K:]
    priced = nearest < len(bank)
    w = len(own) / len(bank) if balanced else 1.0
    share = w * priced.sum(1) / (w * priced.sum(1) + (~priced).sum(1))
    return share >= 0.5


def both_detector(feats, held: np.ndarray, clean: str | None = None) -> tuple[dict, np.ndarray]:
    """Round 6's `scale6-both`: round 3's detector (6,000 random training negatives, seed 0, c 0.01,
    table-balanced) drawn from the negatives the round-6 rule allows, with s_nn appended. Round 7's
    `clean` ("balanced" or "raw") leaves out the positives `priced_like` names."""
    pr, al = feats["priced"], feats["alpaca"]
    bank = bank_rows(feats)
    neg = np.random.default_rng(0).choice(negative_rows(pr["split"], bank, priced_texts(feats)), 6000, replace=False)
    pos = np.flatnonzero(~held)
    if clean is not None:
        pos = pos[~priced_like(feats, held, clean == "balanced")]
    part = lambda g, rows: (g["u"][rows], g["tasks"][rows], g["pooled"][rows])  # noqa: E731
    return fit_bank_detector(pr["pooled"][bank], part(al, pos), part(pr, neg), neg_groups=pr["table"][neg], k=BANK_K)


def fit_scales(predictor, feats, names: list[str]) -> tuple[dict, dict]:
    pr = feats["priced"]
    train = pr["split"] == "train"
    models, quality, held = alpaca_table()
    al = feats["alpaca"]
    rng = np.random.default_rng(0)
    neg = rng.choice(np.flatnonzero(train), 6000, replace=False)
    x = lambda g, rows: np.hstack([g["u"][rows], g["tasks"][rows], g["pooled"][rows]])  # noqa: E731
    detector = fit_detector(x(al, ~held), x(pr, neg), c=0.01, neg_groups=pr["table"][neg])
    meta = predictor.meta
    scales = {}
    for name in names:
        params = dict(CANDIDATES[name])
        kind = params.pop("detector", None)
        clean = params.pop("clean", None)
        task_cal = params.pop("task_cal", None)
        twins = params.pop("twins", False)
        scales[name] = fit_one_scale(
            predictor.model_names, meta["tasks"], meta["model_tables"], pr["labels"][train].astype(np.float64),
            pr["task"][train], pr["table"][train], open_quality=quality[~held], open_models=models,
            links=ALPACA_LINKS, detector=detector, **params)
        if twins:  # round 8: a twin task's rows count as support (only the stored rows change)
            scales[name].rows = twin_rows(scales[name].rows, meta["tasks"])
        if kind == "density":
            scales[name] = DensityScale.of(scales[name], *density_detector(feats, held))
        elif kind == "density-u":
            scales[name] = DensityScale.of(scales[name], *density_detector(feats, held, "u"), space="u")
        elif kind == "both":
            scales[name].detector, scales[name].bank = both_detector(feats, held, clean)
        if name in REFIT_TEMPERATURE:
            from pickwise.predictor.calibration import fit_temperature

            val = pr["split"] == "val"
            logits = scale_logits(predictor, scales[name], {k: v[val] for k, v in pr.items()})
            scales[name].temperature = float(fit_temperature(logits, pr["labels"][val]))
            if task_cal:  # round 9: on all validation rows (what ships); `crossfit_val` scores them
                logits = logits / scales[name].temperature
                t, bias = fit_task_calibration(
                    logits, pr["labels"][val], pr["tasks"][val].astype(np.float64), bias=task_cal.endswith("Tb"),
                    groups=calibration_groups(meta["tasks"], task_cal))
                scales[name] = TaskCalibratedScale.of(scales[name], t, bias if task_cal.endswith("Tb") else None)
    return scales, {"held": held}


def calibration_groups(tasks: list[str], task_cal: str) -> np.ndarray | None:
    """Round 10: tasks share their calibration within a table ("table..."); round 9: one per task."""
    return np.array([t.split("/", 1)[0] for t in tasks]) if task_cal.startswith("table") else None


def crossfit_val(predictor, scale, pr: dict, groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Round 9: validation rows' probabilities with the per-task calibration fitted on the other half
    of the validation rows (halves drawn with seed 0), so they are not scored on what fitted them."""
    val = np.flatnonzero(pr["split"] == "val")
    z = scale_logits(predictor, scale.plain(), {k: v[val] for k, v in pr.items()})
    post, labels = pr["tasks"][val].astype(np.float64), pr["labels"][val]
    half = np.random.default_rng(0).random(len(val)) < 0.5
    out = np.empty_like(z)
    for fit, score in ((half, ~half), (~half, half)):
        t, c = fit_task_calibration(z[fit], labels[fit], post[fit], bias=scale.task_bias is not None, groups=groups)
        out[score] = sigmoid(calibrated(z[score], post[score], t, c))
    return val, out


def scale_logits(predictor, scale, group: dict) -> np.ndarray:
    u = group["u"].astype(np.float64)
    logits = (u @ predictor._vectors.T + predictor._bias) / predictor.temperature
    return scale.combine(logits, group["tasks"].astype(np.float64), u, group["pooled"].astype(np.float64))["logits"]


def all_probabilities(predictor, scale, group: dict) -> np.ndarray:
    if scale is None:
        return sigmoid((group["u"].astype(np.float64) @ predictor._vectors.T + predictor._bias) / predictor.temperature)
    return sigmoid(scale_logits(predictor, scale, group))


def measured_orderings(feats):
    """Dominance pairs from every row of each priced table (a fact of the data), and each pair's tables."""
    pr = feats["priced"]
    tables = [(pr["labels"][pr["table"] == t].astype(np.float64), pr["task"][pr["table"] == t])
              for t in range(len(PRICED_TABLES))]
    direct, implied = dominance_pairs(tables)
    has = np.array([(~np.isnan(q)).any(0) for q, _ in tables])  # [T, M]
    return direct, implied, has


def reversals(prob: np.ndarray, table: np.ndarray | None, pairs, has) -> dict:
    """Share of (prompt, pair) where B gets a higher probability than A: outside and inside the pair's tables."""
    out = {"outside": [0, 0], "inside": [0, 0]}
    for a, b in pairs:
        if table is None:
            outside = np.ones(len(prob), bool)
        else:
            shared = np.flatnonzero(has[:, a] & has[:, b])
            outside = ~np.isin(table, shared)
        rev = prob[:, b] > prob[:, a]
        out["outside"][0] += int(rev[outside].sum())
        out["outside"][1] += int(outside.sum())
        out["inside"][0] += int(rev[~outside].sum())
        out["inside"][1] += int((~outside).sum())
    return {k: (v[0] / v[1] if v[1] else None) for k, v in out.items()} | {"cases": out["outside"][1]}


def ordering_figures(probs: dict, feats, split: str, names: list[str], snapshot) -> dict:
    direct, implied, has = measured_orderings(feats)
    # pairs a base model wins on benchmarks (the pool keeps open-ended prompts from it), shown apart
    base = {n for n in names if n in snapshot and snapshot.get(n).base_model}
    plain = {(a, b) for a, b in direct if not (names[a] in base and names[b] not in base)}
    plain_implied = {(a, b) for a, b in implied if not (names[a] in base and names[b] not in base)}
    pr = feats["priced"]
    rows = pr["split"] == split
    out = {"pairs": {"direct": len(direct), "implied": len(implied)}}
    for name, (p_priced, p_everyday) in probs.items():
        out[name] = {
            "direct_other_tables": reversals(p_priced[rows], pr["table"][rows], direct, has),
            "implied_other_tables": reversals(p_priced[rows], pr["table"][rows], implied, has),
            "direct_everyday": reversals(p_everyday, None, direct, has)["outside"],
            "implied_everyday": reversals(p_everyday, None, implied, has)["outside"],
            "direct_everyday_no_base_winner": reversals(p_everyday, None, plain, has)["outside"],
            "implied_everyday_no_base_winner": reversals(p_everyday, None, plain_implied, has)["outside"],
        }
    out["pairs"].update(direct_no_base_winner=len(plain), implied_no_base_winner=len(plain_implied))
    return out


def routing(probs: dict, feats, predictor, snapshot, split: str, bootstrap: int) -> dict:
    pr = feats["priced"]
    out = {}
    for k, stem in enumerate(PRICED_TABLES):
        table = load_table(default_data_dir() / f"{stem}.parquet")
        mine = (pr["table"] == k) & (pr["split"] == split)
        rows = pr["row"][mine]
        cols = [predictor.trained_index(m) for m in table.model_names]
        sub = table.subset(rows)
        preds = {n: p[0][mine][:, cols] for n, p in probs.items()}
        figs = routing_figures(sub.quality, sub.cost, registry_cost_estimate(table, snapshot)[rows], preds,
                               table.model_names, reference=SHIPPED, n_bootstrap=bootstrap)
        out[stem] = {}
        ece_draws = ece_bootstrap(preds, sub.quality, bootstrap)
        for n in probs:
            r, d = figs.routers[n], figs.routers[n].capture_diff_bootstrap
            out[stem][n] = {"capture": r.capture, "c2m": r.c2m, "brier": r.brier, "ece": r.ece,
                            "ece_interval": ece_draws[n], "shipped_minus_this": None if d is None else [d.lo, d.hi]}
    return out


def ece_bootstrap(preds: dict, quality: np.ndarray, n: int, seed: int = 0) -> dict:
    """95% interval of each predictor's ECE over resampled rows (the same resamples for all): how far
    a table's ECE is from a goal is only meaningful against its sampling noise."""
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(quality), len(quality)) for _ in range(n)]
    out = {}
    for name, p in preds.items():
        values = np.array([ece_score(p[rows], quality[rows]) for rows in draws])
        out[name] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
    return out


def set_figures(prob: np.ndarray, feats, split: str, rho: float | None, seed: int = 0) -> dict:
    """Random pairs/triples of models with results on the same row: fitted rho (if None) and Brier/ECE."""
    pr = feats["priced"]
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(pr["split"] == split)
    sets = {2: ([], []), 3: ([], [])}
    for i in rows:
        have = np.flatnonzero(~np.isnan(pr["labels"][i]))
        for k in (2, 3):
            if len(have) < k:
                continue
            for _ in range(2):
                pick = rng.choice(have, k, replace=False)
                sets[k][0].append(prob[i, pick])
                sets[k][1].append(float((pr["labels"][i, pick] >= 0.5).any()))
    p_sets = [np.array(sets[k][0]) for k in (2, 3)]
    outcomes = [np.array(sets[k][1]) for k in (2, 3)]
    if rho is None:
        rho = fit_set_rho(p_sets, outcomes)
    out = {"rho": rho}
    for k, p, o in zip((2, 3), p_sets, outcomes):
        for label, r in (("independent", 0.0), ("fitted", rho)):
            q = set_quality(p, r)
            out[f"{k}_{label}"] = {"brier": float(np.mean((q - o) ** 2)), "ece": float(ece_score(q, o)),
                                   "mean_pred": float(q.mean()), "mean_actual": float(o.mean()), "n": len(o)}
    return out


def decisions(predictor, scale, snapshot) -> dict:
    """The issue's three prompts: top models and probabilities before (shipped) and after (scale)."""
    specs = [s for s in snapshot.enabled() if predictor.trained_index(s.name) is not None]
    names = [s.name for s in specs]
    price = np.array([s.pricing.input_per_million + s.pricing.output_per_million for s in specs])
    feats = predictor.prompt_features([p for _, p, _ in DECISIONS])
    group = {"u": feats.u, "tasks": feats.tasks, "pooled": feats.pooled}
    cols = [predictor.trained_index(n) for n in names]
    out = {}
    for label, s in ((SHIPPED, None), ("after", scale)):
        p = all_probabilities(predictor, s, group)[:, cols]
        for i, (key, prompt, rule) in enumerate(DECISIONS):
            top = np.argsort(-p[i])[:5]
            if rule == "max_quality":
                pick = int(np.argmax(p[i]))
            else:
                ok = np.flatnonzero(p[i] >= 0.7)
                pick = int(ok[np.argmin(price[ok])]) if len(ok) else None
            ref = {n: round(float(p[i, names.index(n)]), 3) for n in
                   ("gpt-4-1106-preview", "gpt-3.5-turbo-1106", "zero-one-ai/Yi-34B-Chat",
                    "meta-math/MetaMath-Mistral-7B", "llama3-chatqa-1.5-70b") if n in names}
            out.setdefault(key, {"prompt": prompt, "rule": rule})[label] = {
                "pick": None if pick is None else names[pick],
                "top5": [(names[j], round(float(p[i, j]), 3)) for j in top], "named": ref}
    return out


def product_answers(predictor, scale, requests: list[tuple[str, str, dict]]) -> dict:
    """{key: what select answers} for (key, prompt, options) through the product's own select
    (its defaults: low-confidence qualities do not meet a floor, open-ended prompts skip base models),
    with this scale in the predictor."""
    from pickwise.api.errors import NoFeasibleModel
    from pickwise.api.schemas import SelectRequest
    from pickwise.api.service import PickwiseService
    from pickwise.registry import Registry

    kept, predictor.scale = predictor.scale, scale
    service = PickwiseService(Registry(default_registry_dir()), predictor)
    out = {}
    try:
        for key, prompt, options in requests:
            try:
                d = service.select(SelectRequest(prompt=prompt, **options))
                out[key] = f"{d.chosen[0]} ({d.quality:.3f}{', low confidence' if d.low_confidence else ''})"
            except NoFeasibleModel as exc:
                out[key] = f"409, way out {exc.way_out}"
    finally:
        predictor.scale = kept
    return out


def product_decisions(predictor, scale) -> dict:
    """The issue's three prompts through select."""
    options = {"max_quality": {"objective": "max_quality"}, "min_quality 0.7": {"min_quality": 0.7}}
    return product_answers(predictor, scale, [(key, prompt, options[rule]) for key, prompt, rule in DECISIONS])


def probes(predictor, scale) -> dict:
    """PROBES through select: p_open, the max_quality pick, and what a 0.7 floor answers."""
    answers = product_answers(predictor, scale, [(f"{key}|{rule}", prompt, options) for key, prompt in PROBES
                                                 for rule, options in (("max_quality", {"objective": "max_quality"}),
                                                                       ("floor_0.7", {"min_quality": 0.7}))])
    p_open = predictor_p_open(predictor, scale, [prompt for _, prompt in PROBES])
    return {key: {"prompt": prompt, "p_open": round(float(p_open[i]), 3), "max_quality": answers[f"{key}|max_quality"],
                  "floor_0.7": answers[f"{key}|floor_0.7"]} for i, (key, prompt) in enumerate(PROBES)}


def predictor_p_open(predictor, scale, prompts: list[str]) -> np.ndarray:
    f = predictor.prompt_features(prompts)
    return scale.open_ended(f.u.astype(float), f.tasks.astype(float), f.pooled.astype(float))


def open_ended_figures(scale, feats, split: str, held: np.ndarray) -> dict:
    """Share read as open-ended (p_open >= 0.5): priced rows of `split` per table and LLMRouter's per
    task, AlpacaEval's held-out instructions, everyday prompts per kind (with the mean p_open)."""
    def p_open(group, rows=slice(None)):
        g = feats[group]
        return scale.open_ended(g["u"][rows].astype(float), g["tasks"][rows].astype(float), g["pooled"][rows].astype(float))

    pr = feats["priced"]
    rows = pr["split"] == split
    p_priced, p_every = p_open("priced", rows), p_open("everyday")
    table, task = pr["table"][rows], pr["task"][rows]
    stems = list(PRICED_TABLES)
    llm = table == stems.index(next(s for s in stems if "llmrouter" in s.lower()))
    kind = feats["everyday"]["kind"]
    return {
        "priced_share": float((p_priced >= 0.5).mean()),
        "priced_by_table": {PRICED_TABLES[s]: float((p_priced[table == k] >= 0.5).mean()) for k, s in enumerate(stems)},
        "llmrouter_by_task": {t.split("/", 1)[1]: float((p_priced[llm & (task == t)] >= 0.5).mean())
                              for t in np.unique(task[llm])},
        "alpaca_heldout_share": float((p_open("alpaca", held) >= 0.5).mean()),
        "everyday_share": float((p_every >= 0.5).mean()), "everyday_mean": float(p_every.mean()),
        "everyday_by_kind": {k: [float((p_every[kind == k] >= 0.5).mean()), float(p_every[kind == k].mean())]
                             for k in np.unique(kind)},
    }


def markdown(result: dict) -> str:
    split = result["split"]
    lines = [f"# One scale study ({split} rows)", "", f"Artifact {result['artifact']}; bootstrap {result['bootstrap']}.", "",
             f"Orderings: {result['orderings']['pairs']['direct']} direct, {result['orderings']['pairs']['implied']} implied.", "",
             "| predictor | direct, other tables | implied, other tables | direct, everyday | implied, everyday | "
             "direct / implied, everyday, pairs a base model wins left out | direct, inside (control) |",
             "|---|---|---|---|---|---|---|"]
    for name in result["routers"]:
        o = result["orderings"][name]
        lines.append(f"| {name} | {o['direct_other_tables']['outside']:.3f} | {o['implied_other_tables']['outside']:.3f} | "
                     f"{o['direct_everyday']:.3f} | {o['implied_everyday']:.3f} | {o['direct_everyday_no_base_winner']:.3f} / "
                     f"{o['implied_everyday_no_base_winner']:.3f} | {o['direct_other_tables']['inside']:.3f} |")
    lines += ["", "| table | predictor | capture | shipped − this [95%] | c2m | Brier | ECE [95%] |", "|---|---|---|---|---|---|---|"]
    for stem, rows in result["routing"].items():
        for name, r in rows.items():
            d = r["shipped_minus_this"]
            lines.append(f"| {PRICED_TABLES[stem]} | {name} | {r['capture']:.3f} | "
                         + ("" if d is None else "[{:+.3f}, {:+.3f}]".format(*d))
                         + f" | {r['c2m'] if r['c2m'] is None else round(r['c2m'], 3)} | {r['brier']:.4f} | {r['ece']:.3f} "
                         + "[{:.3f}, {:.3f}] |".format(*r["ece_interval"]))
    s = result["sets"]
    lines += ["", f"Set quality (rho = {s['rho']:.2f}, fitted on validation rows):", "",
              "| set | independent Brier / ECE | fitted Brier / ECE | mean predicted (ind., fitted) | actual |", "|---|---|---|---|---|"]
    for k in (2, 3):
        a, b = s[f"{k}_independent"], s[f"{k}_fitted"]
        lines.append(f"| {k} models | {a['brier']:.4f} / {a['ece']:.3f} | {b['brier']:.4f} / {b['ece']:.3f} | "
                     f"{a['mean_pred']:.3f}, {b['mean_pred']:.3f} | {a['mean_actual']:.3f} |")
    lines += ["", "Decisions (registry models the artifact was trained on):", ""]
    for key, d in result["decisions"].items():
        lines.append(f"- **{key}** ({d['rule']}): \"{d['prompt']}\"")
        for label in (SHIPPED, "after"):
            lines.append(f"  - {label}: pick {d[label]['pick']}; top {d[label]['top5']}; {d[label]['named']}")
        lines.append(f"  - product select (defaults): {result['product_decisions'][key]}")
    lines += ["", "Read as open-ended (p_open >= 0.5): share, and the everyday prompts' mean p_open:", ""]
    for name, o in result["open_ended"].items():
        lines.append(f"- **{name}**: priced {split} {o['priced_share']:.3f} "
                     + str({k: round(v, 3) for k, v in o["priced_by_table"].items()})
                     + f"; AlpacaEval held-out {o['alpaca_heldout_share']:.3f}; everyday {o['everyday_share']:.3f}"
                     + f" (mean {o['everyday_mean']:.3f})")
        lines.append("  - LLMRouter by task: " + ", ".join(f"{k} {v:.3f}" for k, v in o["llmrouter_by_task"].items()))
        lines.append("  - everyday by kind (share, mean): "
                     + ", ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}" for k, v in o["everyday_by_kind"].items()))
    lines += ["", "Probes through select (p_open; max_quality pick; what a 0.7 floor answers):", ""]
    for name, rows in result["probes"].items():
        for key, r in rows.items():
            lines.append(f"- {name}, {key} \"{r['prompt']}\": p_open {r['p_open']}; {r['max_quality']}; floor: {r['floor_0.7']}")
    lines += ["", "Scale: " + json.dumps(result["scale_info"])]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--choose", default=None, help="candidates to report, comma-separated (default: all); "
                        "the last is the one --write stores")
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--write", action="store_true", help="save the chosen scale into the shipped artifact")
    parser.add_argument("--name", default="one_scale_study")
    args = parser.parse_args()
    names = args.choose.split(",") if args.choose else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"--choose: unknown candidate(s) {unknown}; known: {list(CANDIDATES)}")
    if args.write and CANDIDATES[names[-1]].get("detector") in STUDY_ONLY:
        parser.error(f"--write: {names[-1]} is study-only (the serving layer has no such detector)")


    predictor = load_predictor(None, "cpu", precision="fp32")
    predictor.scale = None  # "shipped" is the artifact without any scale.json
    snapshot = load_registry(default_registry_dir())
    feats = load_features(predictor)
    scales, fitted = fit_scales(predictor, feats, names)
    probs = {SHIPPED: (all_probabilities(predictor, None, feats["priced"]),
                       all_probabilities(predictor, None, feats["everyday"]))}
    for n in names:
        probs[n] = (all_probabilities(predictor, scales[n], feats["priced"]),
                    all_probabilities(predictor, scales[n], feats["everyday"]))
        if args.split == "val" and isinstance(scales[n], TaskCalibratedScale):
            groups = calibration_groups(predictor.meta["tasks"], CANDIDATES[n]["task_cal"])
            rows, crossfit = crossfit_val(predictor, scales[n], feats["priced"], groups)
            probs[n][0][rows] = crossfit
    result = {"split": args.split, "artifact": predictor.version, "bootstrap": args.bootstrap,
              "routers": list(probs), "orderings": ordering_figures(probs, feats, args.split, predictor.model_names, snapshot)}
    print(json.dumps(result["orderings"], indent=1), flush=True)
    result["routing"] = routing(probs, feats, predictor, snapshot, args.split, args.bootstrap)
    chosen = scales[names[-1]]
    val_sets = set_figures(probs[names[-1]][0], feats, "val", None)
    result["sets"] = val_sets if args.split == "val" else set_figures(probs[names[-1]][0], feats, args.split, val_sets["rho"])
    chosen.set_rho = float(val_sets["rho"])
    result["decisions"] = decisions(predictor, chosen, snapshot)
    result["product_decisions"] = product_decisions(predictor, chosen)
    result["open_ended"] = {n: open_ended_figures(scales[n], feats, args.split, fitted["held"]) for n in names}
    result["probes"] = {}
    for n in names:
        result["probes"][n] = probes(predictor, scales[n])
    result["scale_info"] = {**chosen.info, "candidate": names[-1], "tau": chosen.tau, "open_gate": chosen.open_gate,
                            "temperature": {n: scales[n].temperature for n in names}, "open_difficulty": chosen.open_difficulty,
                            "task_calibration": {n: {"T": scales[n].task_temperature.round(4).tolist(),
                                                     "c": None if scales[n].task_bias is None else
                                                     scales[n].task_bias.round(4).tolist()}
                                                 for n in names if isinstance(scales[n], TaskCalibratedScale)},
                            "base_penalty": chosen.base_penalty, "set_rho": chosen.set_rho}
    result["scale_info"].pop("open_abilities", None)
    for n in names:
        if scales[n].bank is not None:
            d = scales[n].detector
            result["scale_info"].setdefault("detectors", {})[n] = {
                "k": d["k"], "bank": list(scales[n].bank.shape), "space": getattr(scales[n], "space", "pooled"),
                **({"w": d["w"], "b": d["b"]} if np.ndim(d["w"]) == 0 else
                   {"w_s_nn": float(d["w"][-1]), "s_nn_mean": float(d["mean"][-1]), "s_nn_std": float(d["std"][-1]),
                    "features": len(d["w"])})}
    out = ROOT / "bench" / "results"
    suffix = "" if args.split == "test" else f"_{args.split}"
    (out / f"{args.name}{suffix}.json").write_text(json.dumps(result, indent=1, default=str))
    (out / f"{args.name}{suffix}.md").write_text(markdown(result))
    print(markdown(result))
    print(json.dumps(result["open_ended"], indent=1))
    print(json.dumps(result["probes"], indent=1))
    if args.write:
        path = chosen.save(predictor.directory)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
