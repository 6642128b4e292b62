"""Refit model vectors to observed outcomes (`pickwise fit`): the base encoder, new (e, b) per model.

Each model with outcomes gets a MAP fit of (e, b) on its outcome prompts' vectors u (encoded once
by the base artifact and cached in the store per encoder), under the prior of `predictor.coldstart`:
- a trained model: centred on its trained vector, with `trust_trained` times the population's
  precision (a trained vector stands for thousands of results), so a few outcomes move it a little
  and many move it as far as they say;
- a model registered with probe results: fitted to its probe results and its outcomes together,
  under the population prior of the probe results' tables (as cold start does);
- any other model (no vector of its own, or a `similar_to` / `benchmark_score` prior): centred on
  its current prior vector with `trust_new` times the population's precision (a loose prior: the
  team's outcomes, not the population, should shape it).

A share of the prompts, the newest ones, is held out: the candidate is fitted without them, and
it and the base are scored on them (Brier, and headroom capture where several models have results
on the same prompts), each with a paired bootstrap interval of candidate − base over the held-out
prompts: `pickwise artifact promote` reads those figures. Rows that keep only a
prompt's hash are used only when they carry a vector from this encoder, and only for fitting.
Outcomes that record the answer's `output_tokens` refit the models' output-length vectors the same
way (`predictor.length_refit`), written into the candidate's `output_lengths.npz`.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pickwise.predictor.artifact import write_refit_artifact
from pickwise.predictor.coldstart import fit_model_vector
from pickwise.predictor.length_refit import length_figures, refit_lengths
from pickwise.predictor.lengths import save_length_model

log = logging.getLogger("pickwise.predictor")
# the population prior's weight on a model without a trained vector (docs/decisions/outcome-prior.md)
TRUST_NEW = 0.03
MIN_CAPTURE_PROMPTS = 20  # fewer held-out prompts with several models' results: no capture figure
BOOTSTRAP_RESAMPLES = 1000  # of the held-out prompts, the same ones for base and candidate (paired)
BOOTSTRAP_SEED = 0  # fixed: the same store and candidate always get the same interval
BOOTSTRAP_CHUNK = 50  # resamples drawn at once, so memory stays bounded on a large holdout
ENCODE_CHUNK = 512  # prompts encoded (and cached) per step, so an interrupted fit keeps most of its work


@dataclass
class OutcomeRows:
    """The store's outcomes as plain arrays, oldest first; features per prompt (sha256) in `features`."""

    models: list[str]
    scores: np.ndarray
    shas: list[str]
    timestamps: list[str]
    cost: np.ndarray  # NaN where not recorded
    texts: dict[str, str] = field(default_factory=dict)  # prompts whose text is kept
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # hashed prompts' stored u (this encoder)
    skipped: dict[str, int] = field(default_factory=dict)
    tokens: np.ndarray | None = None  # the answers' output tokens, NaN where not recorded (None: none recorded)

    def __post_init__(self):
        if self.tokens is None:
            self.tokens = np.full(len(self.models), np.nan)

    def __len__(self) -> int:
        return len(self.models)


def read_outcomes(store, snapshot, encoder_version: str) -> OutcomeRows:
    """Every usable outcome of `store`: models resolved in `snapshot` (rows of models it no longer
    has are skipped), hashed rows only with a vector from `encoder_version`."""
    models, scores, shas, stamps, cost, tokens = [], [], [], [], [], []
    texts, vectors = {}, {}
    skipped = {"unknown_model": 0, "hashed_without_vector": 0}
    for o in store.outcomes():
        if o.model not in snapshot:
            skipped["unknown_model"] += 1
            continue
        if o.prompt is None:
            if o.prompt_vector is None or o.vector_encoder != encoder_version:
                skipped["hashed_without_vector"] += 1
                continue
            vectors[o.prompt_sha256] = np.asarray(o.prompt_vector, dtype=np.float64)
        else:
            texts[o.prompt_sha256] = o.prompt
        models.append(snapshot.get(o.model).name)
        scores.append(o.score)
        shas.append(o.prompt_sha256)
        stamps.append(o.timestamp)
        cost.append(np.nan if o.cost_usd is None else o.cost_usd)
        tokens.append(np.nan if o.output_tokens is None else o.output_tokens)
    return OutcomeRows(models, np.array(scores, dtype=np.float64), shas, stamps, np.array(cost, dtype=np.float64),
                       texts, vectors, skipped, np.array(tokens, dtype=np.float64))


@dataclass
class Features:
    """The encoder's outputs for some prompts, by sha256: u always, tasks and pooled when text was kept."""

    u: dict[str, np.ndarray]
    tasks: dict[str, np.ndarray]
    pooled: dict[str, np.ndarray]
    encoded: int = 0  # how many prompts this fit had to encode (the rest came from the cache)


def prompt_features(predictor, rows: OutcomeRows, store=None, progress: bool = False) -> Features:
    """Features of every prompt of `rows`: cached ones from `store`, the rest encoded now and cached."""
    cfg = predictor.model.config
    dim, n_tasks = cfg.dim, (cfg.n_tasks if cfg.uses_tasks else 0)
    u, tasks, pooled = {}, {}, {}

    def unpack(sha: str, blob: bytes) -> None:
        values = np.frombuffer(blob, dtype="<f4").astype(np.float64)
        u[sha] = values[:dim]
        if n_tasks:
            tasks[sha], pooled[sha] = values[dim:dim + n_tasks], values[dim + n_tasks:]

    wanted = list(rows.texts)
    cached = store.cached_features(wanted, predictor.encoder_version) if store is not None else {}
    for sha, blob in cached.items():
        unpack(sha, blob)
    missing = [sha for sha in wanted if sha not in cached]
    for start in range(0, len(missing), ENCODE_CHUNK):
        part = missing[start:start + ENCODE_CHUNK]
        f = predictor.prompt_features([rows.texts[s] for s in part], progress=progress)
        blobs = {}
        for i, sha in enumerate(part):
            pieces = [f.u[i]] + ([f.tasks[i], f.pooled[i]] if n_tasks and f.tasks is not None else [])
            blobs[sha] = np.concatenate(pieces).astype("<f4").tobytes()
            unpack(sha, blobs[sha])
        if store is not None:
            store.cache_features(blobs, predictor.encoder_version)
        log.info("encoded %d of %d new outcome prompts", min(start + ENCODE_CHUNK, len(missing)), len(missing))
    for sha, vector in rows.vectors.items():
        u.setdefault(sha, vector)
    return Features(u, tasks, pooled, len(missing))


def holdout_mask(rows: OutcomeRows, share: float) -> np.ndarray:
    """True for the rows of the newest `share` of the prompts whose text is kept (by each prompt's
    latest outcome): whole prompts go to one side, so a held-out prompt is one the fit never saw."""
    if share <= 0 or not len(rows):
        return np.zeros(len(rows), dtype=bool)
    latest: dict[str, str] = {}
    for sha, ts in zip(rows.shas, rows.timestamps):
        if sha in rows.texts and ts >= latest.get(sha, ""):
            latest[sha] = ts
    order = sorted(latest, key=lambda s: (latest[s], s))
    n_held = int(round(share * len(order)))
    if n_held == 0 or n_held >= len(order):
        return np.zeros(len(rows), dtype=bool)
    held = set(order[len(order) - n_held:])
    return np.array([sha in held for sha in rows.shas], dtype=bool)


def fit_one(predictor, spec, snapshot, u: np.ndarray, y: np.ndarray, trust_trained: float,
            trust_new: float = TRUST_NEW) -> tuple[np.ndarray, float, str]:
    """(e, b, what the model was scored from before) for one registry model and its outcomes."""
    from pickwise.predictor.inference import MIN_OUTCOME_ROWS, probe_results

    current = predictor.model_vector(spec, snapshot)
    vectors, bias = predictor.trained_vectors
    temperature = predictor.temperature
    if current.source == "trained" or current.source == "outcomes":
        e, b = fit_model_vector(u, y, vectors, bias, temperature, center=(current.vector, current.bias),
                                trust=trust_trained if current.source == "trained" else 1.0)
    elif current.source == "probe":
        scores = probe_results(spec, snapshot)
        ids, probe_u = predictor.probe_vectors(needed=set(scores))
        position = {pid: i for i, pid in enumerate(ids)}
        known = [pid for pid in scores if pid in position]
        from pickwise.registry.probes.probe_set import probe_index

        index = probe_index()
        ref = predictor.reference_models({index[pid].table for pid in known if pid in index})
        e, b = fit_model_vector(np.vstack([probe_u[[position[p] for p in known]], u]),
                                np.concatenate([[scores[p] for p in known], y]), vectors[ref], bias[ref], temperature)
    else:  # below MIN_OUTCOME_ROWS the loose prior let one thumbs-up lift a model to 0.95 everywhere
        e, b = fit_model_vector(u, y, vectors, bias, temperature, center=(current.vector, current.bias),
                                trust=trust_new if len(y) >= MIN_OUTCOME_ROWS else 1.0)
    return e, b, current.source


def fit_vectors(predictor, snapshot, rows: OutcomeRows, features: Features, mask: np.ndarray,
                trust_trained: float = 10.0, trust_new: float = TRUST_NEW) -> dict[str, dict]:
    """{model: {"vector", "bias", "rows", "prompts", "before"}} fitted on the rows where `mask`."""
    by_model: dict[str, list[int]] = defaultdict(list)
    for i in np.flatnonzero(mask):
        by_model[rows.models[i]].append(int(i))
    fitted = {}
    reading = scale_readings(predictor, features) if predictor.scale is not None else {}
    for name, idx in sorted(by_model.items()):
        spec = snapshot.get(name)
        u = np.stack([features.u[rows.shas[i]] for i in idx])
        e, b, before = fit_one(predictor, spec, snapshot, u, rows.scores[idx], trust_trained, trust_new)
        fitted[name] = {"vector": [float(x) for x in e], "bias": float(b), "rows": len(idx),
                        "prompts": len({rows.shas[i] for i in idx}), "before": before}
        current = predictor.model_vector(spec, snapshot)
        index = current.index if current.source == "trained" else None  # its trained row, by name or alias
        if index is not None and predictor.model_names[index] != name:  # trained under an alias: say which
            fitted[name]["trained_as"] = predictor.model_names[index]
        read = [i for i in idx if rows.shas[i] in reading]  # a hash-only prompt has no task posterior
        if read:
            cut, difficulty = (np.array([reading[rows.shas[i]][k] for i in read]) for k in (0, 1))
            evidence = predictor.outcome_evidence(index, np.stack([features.tasks[rows.shas[i]] for i in read]),
                                                  cut, difficulty, rows.scores[read])
            fitted[name]["evidence"] = evidence.to_dict()
    return fitted


def scale_readings(predictor, features: Features) -> dict[str, tuple[float, float]]:
    """{sha256: (open-ended cut, difficulty)} of every prompt with a task posterior, read once for all
    models (`QualityPredictor.scale_reading`)."""
    shas = sorted(features.tasks)
    if not shas:
        return {}
    pooled = np.stack([features.pooled[s] for s in shas]) if features.pooled else None
    cut, difficulty = predictor.scale_reading(np.stack([features.u[s] for s in shas]),
                                              np.stack([features.tasks[s] for s in shas]), pooled)
    return {s: (float(c), float(d)) for s, c, d in zip(shas, cut, difficulty)}


def _negated(x: float | None) -> float | None:
    return None if x is None else 0.0 - x  # 0.0 - 0.0 is 0.0, where -0.0 would print as "-0.0"


def _difference(samples: np.ndarray, point: float) -> dict:
    """candidate − base: the point estimate and its bootstrap summary (mean, std, 95% lo/hi, n)."""
    from pickwise.predictor.routing_metrics import _interval

    return {"point": float(point), **_interval(samples).model_dump()}


def paired_difference(loss_base: np.ndarray, loss_candidate: np.ndarray, prompt: np.ndarray, n_prompts: int,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """Candidate − base mean per-row loss (Brier's squared errors, lengths' |log2 error|) with a paired
    bootstrap interval: the held-out prompts are resampled (a prompt's outcomes stay together, as they
    are not independent) and both are scored on each resample. `prompt[i]`: row i's prompt index."""
    diff = np.bincount(prompt, weights=loss_candidate - loss_base, minlength=n_prompts)
    count = np.bincount(prompt, minlength=n_prompts).astype(np.float64)
    rng = np.random.default_rng(seed)
    samples = []
    for start in range(0, resamples, BOOTSTRAP_CHUNK):
        draws = rng.integers(0, n_prompts, size=(min(BOOTSTRAP_CHUNK, resamples - start), n_prompts))
        samples.append(diff[draws].sum(1) / count[draws].sum(1))
    return _difference(np.concatenate(samples) if samples else np.zeros(0), diff.sum() / count.sum())


def capture_figures(quality: np.ndarray, cost: np.ndarray, c_hat: np.ndarray, predicted: dict[str, np.ndarray],
                    names: list[str]) -> dict:
    """Headroom capture of "base" and "candidate" routing on the same prompts ([N, M] arrays, NaN: no
    result), and candidate − base with its paired bootstrap interval (the prompts resampled, both
    routers scored on each resample); ValueError when the prompts leave no headroom to capture."""
    from pickwise.predictor.routing_metrics import routing_figures

    result = routing_figures(quality, cost, c_hat, predicted, names, reference="base",
                             n_bootstrap=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)
    if any(result.routers[k].capture is None for k in ("base", "candidate")):  # undefined, say why
        raise ValueError("; ".join(result.notes) or "capture is undefined on these prompts")
    capture = {k: float(result.routers[k].capture) for k in ("base", "candidate")}
    flipped = result.routers["candidate"].capture_diff_bootstrap  # base − candidate: turned round here
    return {"prompts": int(len(quality)), **capture, "difference": {
        "point": capture["candidate"] - capture["base"], "mean": _negated(flipped.mean), "std": flipped.std,
        "lo": _negated(flipped.hi), "hi": _negated(flipped.lo), "n": flipped.n}}


@dataclass
class HeldOut:
    """Held-out outcomes `idx` as a (prompt, model) grid: row r[i] and column c[i] of outcome idx[i],
    and the prompts' encoder outputs stacked in row order."""

    idx: np.ndarray
    prompts: list[str]  # sha256, sorted
    names: list[str]  # registry names, sorted
    r: np.ndarray
    c: np.ndarray
    u: np.ndarray
    tasks: np.ndarray | None
    pooled: np.ndarray | None
    specs: list


def held_out_grid(snapshot, rows: OutcomeRows, features: Features, idx: np.ndarray) -> HeldOut:
    prompts = sorted({rows.shas[i] for i in idx})
    names = sorted({rows.models[i] for i in idx})
    p_row, m_col = {s: k for k, s in enumerate(prompts)}, {m: j for j, m in enumerate(names)}
    return HeldOut(
        idx=idx, prompts=prompts, names=names,
        r=np.array([p_row[rows.shas[i]] for i in idx]), c=np.array([m_col[rows.models[i]] for i in idx]),
        u=np.stack([features.u[s] for s in prompts]),
        tasks=np.stack([features.tasks[s] for s in prompts]) if features.tasks else None,
        pooled=np.stack([features.pooled[s] for s in prompts]) if features.pooled else None,
        specs=[snapshot.get(m) for m in names])


def holdout_figures(base, candidate, snapshot, rows: OutcomeRows, features: Features, mask: np.ndarray) -> dict:
    """Brier of base and candidate on the held-out outcomes (overall and per model), and headroom
    capture on the held-out prompts with results for two or more models; each overall figure with
    `difference`, candidate − base and its paired bootstrap interval."""
    from pickwise.registry import count_tokens, estimate_cost_usd

    idx = np.flatnonzero(mask)
    if not len(idx):
        return {"rows": 0}
    grid = held_out_grid(snapshot, rows, features, idx)
    prompts, names, specs, r, c = grid.prompts, grid.names, grid.specs, grid.r, grid.c
    predicted = {}
    for label, predictor in (("base", base), ("candidate", candidate)):
        vectors = [predictor.model_vector(s, snapshot) for s in specs]
        predicted[label] = predictor.evidence(grid.u, vectors, grid.tasks, pooled=grid.pooled).quality
    y = rows.scores[idx]
    sq = {k: (p[r, c] - y) ** 2 for k, p in predicted.items()}
    figures = {
        "rows": int(len(idx)), "prompts": len(prompts),
        "brier": {**{k: float(v.mean()) for k, v in sq.items()},
                  "difference": paired_difference(sq["base"], sq["candidate"], r, len(prompts))},
        "per_model": {m: {"rows": int((c == j).sum()), **{k: float(v[c == j].mean()) for k, v in sq.items()}}
                      for j, m in enumerate(names)},
        "capture": None,
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "interval": 0.95,
                      "unit": "held-out prompt"},
    }
    # capture: mean score per (prompt, model); realised cost as recorded, else the registry's estimate
    total, count, paid, paid_n = (np.zeros((len(prompts), len(names))) for _ in range(4))
    np.add.at(total, (r, c), y)
    np.add.at(count, (r, c), 1)
    has_cost = ~np.isnan(rows.cost[idx])
    np.add.at(paid, (r[has_cost], c[has_cost]), rows.cost[idx][has_cost])
    np.add.at(paid_n, (r[has_cost], c[has_cost]), 1)
    several = (count > 0).sum(1) >= 2
    if several.sum() >= MIN_CAPTURE_PROMPTS and len(names) >= 2:
        keep = np.flatnonzero(several)
        text = {s: rows.texts[s] for s in prompts}
        tokens = [count_tokens(text[prompts[k]]) for k in keep]
        c_hat = np.array([[estimate_cost_usd(s, t) for s in specs] for t in tokens])
        with np.errstate(invalid="ignore", divide="ignore"):
            quality = np.where(count[keep] > 0, total[keep] / count[keep], np.nan)
            cost = np.where(paid_n[keep] > 0, paid[keep] / np.maximum(paid_n[keep], 1), c_hat)
        cost = np.where(np.isnan(quality), np.nan, cost)
        try:
            figures["capture"] = capture_figures(quality, cost, c_hat, {k: p[keep] for k, p in predicted.items()},
                                                 names)
        except ValueError as exc:  # e.g. no spread between zero router and oracle on these prompts
            figures["capture"] = None
            figures["capture_skipped"] = str(exc)
    return figures


def refit(base_predictor, snapshot, store, out_dir: str | Path, *, holdout: float = 0.2, trust_trained: float = 10.0,
          trust_new: float = TRUST_NEW, progress: bool = False) -> dict:
    """Fit every model with outcomes in `store`, write the refitted artifact to `out_dir`, and return
    what was fitted from and the held-out figures (also in the artifact's meta.json, key "refit")."""
    start = time.perf_counter()
    rows = read_outcomes(store, snapshot, base_predictor.encoder_version)
    if not len(rows):
        from pickwise.errors import PickwiseError

        raise PickwiseError(f"{store.location}: no usable outcomes (skipped: {rows.skipped}); import some with "
                            "`pickwise outcomes import`")
    features = prompt_features(base_predictor, rows, store, progress=progress)
    encoded_at = time.perf_counter()
    held = holdout_mask(rows, holdout)
    # a refit of a refit counts each outcome once (by every name: a trained model may be known by an alias)
    origin = base_predictor.without_outcomes({n for m in set(rows.models) for n in snapshot.get(m).all_names()})
    fitted = fit_vectors(origin, snapshot, rows, features, ~held, trust_trained, trust_new)
    lengths = refit_lengths(origin, snapshot, rows, features, held, trust_trained)
    fitted_at = time.perf_counter()
    candidate = origin.with_outcome_vectors(fitted)
    if lengths.fitted:
        candidate = candidate.with_outcome_lengths(lengths.vectors(), lengths.rows())
    figures = holdout_figures(base_predictor, candidate, snapshot, rows, features, held)
    if figures.get("rows"):
        figures["lengths"] = length_figures(base_predictor, candidate, snapshot, rows, features, held)
    report = {
        "store": store.location,  # the resolved file path, or the URL without its password
        "base_artifact": str(Path(base_predictor.directory).resolve()),
        "base_version": base_predictor.version,
        "fitted_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "outcomes": {"used": len(rows), "fit": int((~held).sum()), "held_out": int(held.sum()),
                     "prompts": len(set(rows.shas)), "skipped": rows.skipped},
        "time_range": [min(rows.timestamps), max(rows.timestamps)],
        "holdout_share": holdout, "trust_trained": trust_trained, "trust_new": trust_new,
        "models": {m: {k: v for k, v in f.items() if k not in ("vector", "bias", "evidence")}
                   | ({"open_ended_outcomes": f["evidence"]["open_rows"]} if "evidence" in f else {})
                   for m, f in fitted.items()},
        "lengths": lengths.report(),
        "holdout": figures,
        "seconds": {"encode": round(encoded_at - start, 3), "fit": round(fitted_at - encoded_at, 3),
                    "total": round(time.perf_counter() - start, 3)},
        "prompts_encoded": features.encoded,
    }
    write_refit_artifact(base_predictor.directory, out_dir, fitted, report,
                         (lambda directory: save_length_model(directory, candidate.lengths)) if lengths.fitted else None)
    return report
