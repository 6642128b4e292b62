"""Output length: how many tokens a model's answer to a prompt will have, per prompt and model.

Why: a call's cost is prompt tokens x input price + output tokens x output price, and the output
price is usually the larger, but answers vary tenfold in length with the prompt and the model. A
registry constant per model charges a one-word multiple-choice answer like a worked solution.

The model has the quality model's vector form, on the same frozen prompt vector u:

    log2 tokens(p, m) ~ v(u(p)) . l_m + c_m,     v(u) = u            ("linear")
                                                  v(u) = [u, g(u)]    ("mlp": g a shared small net)

so every model's observed lengths train one shared prompt side, and a new model needs only
(l, c), which a few dozen observed answer lengths determine by a MAP fit under a Gaussian prior
taken from the trained models (`fit_length_vector`, the analogue of `predictor.coldstart`).
v depends on u alone because u is all the service's encoder outputs (the int8 ONNX graph).

The fit is on log2 counts (answer lengths are roughly log-normal; a squared error on raw
counts would be ruled by the few longest answers), which estimates a median. Expected cost is
linear in the count, so the count used for cost is the median times the model's smearing
factor (Duan's: the training-row mean of 2^residual), `expected_tokens` below.

Counts are cl100k_base tokens, as the routing tables record them; prices per token are applied
to those counts. A model without length evidence falls back to its registry
`expected_output_tokens`, and `LengthEstimate.sources` says so.

Observed lengths refine a model's vector by the same MAP fit, centred on what the model had:
its probe answers' lengths (`QualityPredictor.length_vector`) and its outcomes' lengths
(`pickwise fit`, stored as the model's "outcomes" vector). A model's vector is, in this order,
its outcomes vector, its probe fit, its trained vector, else none (the registry prior).

Stored in the artifact directory as `output_lengths.npz` (see `save_length_model`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pickwise.predictor.coldstart import gaussian_prior

log = logging.getLogger("pickwise.predictor")
LENGTHS_FILE = "output_lengths.npz"
FORMAT = "output-lengths-v1"
# v2: v1 plus the vectors `pickwise fit` refitted to outcomes, which a v1 reader would silently
# ignore (serving the trained lengths), so it refuses the file instead
OUTCOME_FORMAT = "output-lengths-v2"
READABLE_FORMATS = (FORMAT, OUTCOME_FORMAT)
SOURCES = ("outcomes", "probe", "trained", "fitted", "registry")
TRUST_TRAINED = 10.0  # a trained vector's weight against new lengths, as `pickwise fit --trust-trained` defaults
MIN_TOKENS = 1.0  # counts are clipped here before log2: a 0-token answer is billed like a 1-token one
PRIOR_SHRINK = 0.1
SUPPORTED = 0.5  # a trained model with at least this length support on a prompt votes for the pool's typical count
OUTCOME_LENGTH_ROWS = 50  # a trained model refitted to n outcome lengths is supported n / (n + this) everywhere


def log2_tokens(tokens: np.ndarray) -> np.ndarray:
    """log2 of counts clipped at MIN_TOKENS (NaN stays NaN)."""
    return np.log2(np.maximum(np.asarray(tokens, dtype=np.float64), MIN_TOKENS))


# ----------------------------------------------------------------------------- the prompt side


@dataclass(frozen=True)
class FeatureMap:
    """v(u): the prompt side of the length model. kind "linear" (v = u) or "mlp" (v = [u, g(u)]).

    g(u) = GELU(LN(u) A + a) B + b in numpy, so inference needs no torch.
    """

    kind: str = "linear"
    params: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if self.kind == "linear":
            return u
        if self.kind != "mlp":
            raise ValueError(f"unknown length feature map {self.kind!r}")
        p = self.params
        mu, var = u.mean(axis=1, keepdims=True), u.var(axis=1, keepdims=True)
        x = (u - mu) / np.sqrt(var + 1e-5) * p["ln_w"] + p["ln_b"]
        h = x @ p["a_w"].T + p["a_b"]
        h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
        return np.hstack([u, h @ p["b_w"].T + p["b_b"]])


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return erf(x)


# ----------------------------------------------------------------------------- the model side


@dataclass(frozen=True)
class LengthVector:
    """How one model's lengths are predicted: log2 median = v . vector + bias, times 2^log2_smear for the mean."""

    name: str
    vector: np.ndarray
    bias: float
    log2_smear: float
    source: str  # "outcomes" | "probe" | "trained" | "fitted"
    log2_range: tuple[float, float] = (0.0, math.inf)  # the estimate is clipped here (see LengthModel)
    tables: tuple[str, ...] = ()  # "probe": the tables its answers' prompts come from (where it has evidence)


@dataclass
class LengthEstimate:
    """Expected output tokens [N, M] (what cost multiplies by the output price), and per model where they come from."""

    tokens: np.ndarray
    sources: list[str]
    log2_median: np.ndarray  # [N, M] the log-scale estimate (NaN for registry fallbacks)


def fit_length_vector(
    v: np.ndarray,
    log2_counts: np.ndarray,
    vectors: np.ndarray,
    bias: np.ndarray,
    noise_var: float,
    *,
    center: tuple[np.ndarray, float] | None = None,
    trust: float = 1.0,
) -> tuple[np.ndarray, float]:
    """MAP (l, c) for a model whose answers to prompts with features `v` [n, d] had `log2_counts` [n].

    Linear-Gaussian: log2 count ~ N(v . l + c, noise_var) and (l, c) ~ N(mean, cov) of the
    population (`vectors`, `bias`), so the posterior mode is one linear solve. With no results
    it is the population mean; with many, the least-squares fit. As in `coldstart.fit_model_vector`,
    `center` (a model's current (l, c)) replaces the population mean and `trust` scales the
    prior's precision: new lengths move a vector the model already has as far as they say.
    """
    mean, precision = gaussian_prior(np.asarray(vectors, np.float64), np.asarray(bias, np.float64), PRIOR_SHRINK)
    if center is not None:
        mean = np.append(np.asarray(center[0], dtype=np.float64), center[1])
    precision = precision * trust
    y = np.asarray(log2_counts, dtype=np.float64)
    ok = np.isfinite(y)
    x = np.hstack([np.asarray(v, np.float64)[ok], np.ones((int(ok.sum()), 1))])
    a = x.T @ x / noise_var + precision
    theta = np.linalg.solve(a, x.T @ y[ok] / noise_var + precision @ mean)
    return theta[:-1], float(theta[-1])


@dataclass
class LengthModel:
    """Trained length vectors for named models plus the shared prompt side; see the module docstring."""

    names: list[str]
    vectors: np.ndarray  # [M, d]
    bias: np.ndarray  # [M]
    log2_smear: np.ndarray  # [M] log2 of each model's smearing factor (median -> mean)
    noise_var: float  # residual variance of log2 counts on training rows: the MAP fit's likelihood
    features: FeatureMap
    # [M, 2] the smallest and largest log2 count each model produced on the training rows: a linear
    # form extrapolates without bound on prompts unlike the tables' (an essay prompt read as a
    # maths task), so estimates are clipped to what the model was seen to do
    log2_range: np.ndarray | None = None
    aliases: dict[str, str] = field(default_factory=dict)  # other name -> a name in `names`
    model_tables: dict[str, list[str]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    # vectors `pickwise fit` refitted to outcome lengths, by registry name: they come before any other
    outcome: dict[str, LengthVector] = field(default_factory=dict)
    outcome_rows: dict[str, int] = field(default_factory=dict)  # how many outcome lengths each was fitted to

    def __post_init__(self):
        self._index = {n: j for j, n in enumerate(self.names)}
        for alias, name in self.aliases.items():
            if name in self._index:
                self._index.setdefault(alias, self._index[name])
        self._fitted: dict[str, LengthVector] = {}
        if self.log2_range is None:
            self.log2_range = np.tile([0.0, np.inf], (len(self.names), 1))

    # ---- lookup ------------------------------------------------------------------------
    def trained_vector(self, names: Iterable[str]) -> LengthVector | None:
        """The trained vector of the first of `names` (a name and its aliases) that has one."""
        names = list(names)
        for name in names:
            j = self._index.get(name)
            if j is not None:
                return LengthVector(names[0], self.vectors[j], float(self.bias[j]), float(self.log2_smear[j]), "trained",
                                    (float(self.log2_range[j, 0]), float(self.log2_range[j, 1])))
        return None

    def outcome_vector(self, names: Iterable[str]) -> LengthVector | None:
        """The outcomes vector of the first of `names` that has one, under the first name."""
        names = list(names)
        for name in names:
            vec = self.outcome.get(name)
            if vec is not None:
                return dataclasses.replace(vec, name=names[0])
        return None

    def without_outcome(self, names: Iterable[str]) -> LengthModel:
        """A copy without the outcome vectors of `names` (this one is unchanged)."""
        names = set(names)
        return dataclasses.replace(self, outcome={k: v for k, v in self.outcome.items() if k not in names},
                                   outcome_rows={k: v for k, v in self.outcome_rows.items() if k not in names})

    def with_outcome(self, vectors: Mapping[str, LengthVector], rows: Mapping[str, int]) -> LengthModel:
        """A copy whose models in `vectors` are predicted from those outcome vectors (this one is unchanged);
        outcome vectors it already had are kept unless replaced."""
        return dataclasses.replace(self, outcome={**self.outcome, **vectors}, outcome_rows={**self.outcome_rows, **rows})

    def add_fitted(self, name: str, u: np.ndarray, tokens: np.ndarray, tables: Iterable[str] | None = None) -> LengthVector:
        """Fit (l, c) for `name` from its answers' token counts on prompts with vectors `u`, and keep it.

        Later `vector_for` calls with that name return it (source "fitted") unless it is trained.
        """
        vec = self.fit(u, tokens, tables, name=name)
        self._fitted[name] = vec
        return vec

    def fit(self, u: np.ndarray, tokens: np.ndarray, tables: Iterable[str] | None = None, name: str = "", *,
            center: LengthVector | None = None, trust: float = 1.0, source: str = "fitted") -> LengthVector:
        """MAP length vector from observed counts; prior from the trained models of `tables` (all when None),
        centred on `center` (with its smearing factor and range) when the model already has a vector."""
        ref = self.reference_models(tables)
        observed = log2_tokens(tokens)
        vector, bias = fit_length_vector(self.features(u), observed, self.vectors[ref], self.bias[ref],
                                         self.noise_var, trust=trust,
                                         center=None if center is None else (center.vector, center.bias))
        if center is not None:
            smear, (lo, hi) = center.log2_smear, center.log2_range
        else:
            smear = float(np.median(self.log2_smear[ref]))
            lo, hi = float(self.log2_range[ref, 0].min()), float(self.log2_range[ref, 1].max())
        smear = own_smear(observed - (self.features(u) @ vector + bias), smear)
        lo = min(lo, float(np.nanmin(observed, initial=np.inf)))
        hi = max(hi, float(np.nanmax(observed, initial=-np.inf)))
        return LengthVector(name, vector, bias, smear, source, (lo, hi), tuple(sorted(tables or ())))

    def reference_models(self, tables: Iterable[str] | None = None) -> np.ndarray:
        """Trained models with lengths on any of `tables` (every one when None or fewer than 3 match)."""
        everyone = np.arange(len(self.names))
        if tables is None:
            return everyone
        wanted = set(tables)
        ref = np.array([j for j, n in enumerate(self.names) if wanted & set(self.model_tables.get(n, ()))], dtype=int)
        return ref if len(ref) >= 3 else everyone

    def vector_for(self, model) -> LengthVector | None:
        """A name or a registry ModelSpec -> its length vector (outcomes, else trained, else fitted), or None
        (use the registry). Probe answers need the registry snapshot: `QualityPredictor.length_vector`."""
        names = [model] if isinstance(model, str) else list(model.all_names())
        refitted = self.outcome_vector(names)
        if refitted is not None:
            return refitted
        trained = self.trained_vector(names)
        if trained is not None:
            return trained
        for name in names:
            if name in self._fitted:
                return self._fitted[name]
        return None

    def trained_tables(self, names: Iterable[str]) -> list[str]:
        """The tables the trained model among `names` (a name and its aliases) has length rows on ([] if none)."""
        for name in names:
            j = self._index.get(name)
            if j is not None:
                return list(self.model_tables.get(self.names[j], ()))
        return []

    def toward_pool(self, u: np.ndarray, tasks: np.ndarray, task_names: Sequence[str], models: Sequence,
                    found: Sequence[LengthVector | None], tokens: np.ndarray, *,
                    options: np.ndarray | None = None) -> np.ndarray:
        """`tokens` [N, M] with each trained-only model's estimate pulled towards the pool's typical count
        where the prompt reads as tasks of tables it has no length rows on (decision output-lengths.md,
        rounds 2 to 6): a linear form extrapolates there, as quality does without `support`.

        s = the task posterior `tasks` [N, K] (tasks named "<table>/<task>") on tasks of the model's
        tables and their twins (`length_support`), twins counting only on prompts with lettered
        `options` (`has_options`; None: texts unknown, twins count everywhere); t = the median estimate
        of the trained models whose support on their own tables alone is >= SUPPORTED (all, if none: a
        twin says a model's lengths apply to a same-named task, not that another table's prompts of that
        name are answered in its table's format); estimate 2^(s log2 est + (1 - s) log2 t),
        clipped as `predict` clips. A trained model's vector refitted to n outcome lengths is pulled the
        same way, with s at least n / (n + OUTCOME_LENGTH_ROWS): a refit centred on the trained vector
        moves little with few outcomes, and without the pull it priced "What is 5 + 7?" at MMLU-Pro's
        chain-of-thought length. A vector fitted to probe answers is pulled too, its support counting the
        tables those answers' prompts come from (and its trained tables): 220 MMLU-Pro answers of 300
        tokens priced a GSM8K question at 414-550. Registry fallbacks are left as they are.
        """
        names = [[m] if isinstance(m, str) else list(m.all_names()) for m in models]
        evidence = {j: self.outcome_rows.get(x.name, 0) for j, x in enumerate(found)
                    if x is not None and x.source == "outcomes" and self.trained_vector(names[j]) is not None}
        probed = {j for j, x in enumerate(found) if x is not None and x.source == "probe" and x.tables}
        pulled = [j for j, x in enumerate(found)
                  if x is not None and (x.source == "trained" or j in evidence or j in probed)]
        if not pulled:
            return tokens
        u = np.atleast_2d(np.asarray(u, dtype=np.float64))
        tasks = np.atleast_2d(np.asarray(tasks, dtype=np.float64))
        pool = self.predict(u, self.names, vectors=[self.trained_vector([n]) for n in self.names]).tokens
        pool_s = length_support(tasks, task_names, [self.model_tables.get(n, ()) for n in self.names], twins=False)
        voters = pool_s >= SUPPORTED
        voters[~voters.any(axis=1)] = True
        typical = np.nanmedian(np.where(voters, pool, np.nan), axis=1)
        tables = [sorted(set(self.trained_tables(names[j])) | set(found[j].tables)) for j in pulled]
        s = length_support(tasks, task_names, tables, options=options)
        floor = np.array([evidence.get(j, 0) / (evidence.get(j, 0) + OUTCOME_LENGTH_ROWS) for j in pulled])
        s = np.maximum(s, floor[None, :])
        smear = [found[j].log2_smear if self.meta.get("count_form", "mean") == "mean" else 0.0 for j in pulled]
        lo = np.array([found[j].log2_range[0] for j in pulled]) + smear
        hi = np.array([found[j].log2_range[1] for j in pulled]) + smear
        z = s * np.log2(tokens[:, pulled]) + (1.0 - s) * np.log2(typical)[:, None]
        out = tokens.copy()
        out[:, pulled] = np.exp2(np.clip(z, lo, hi))
        for j in pulled:  # never more than the model may produce
            if not isinstance(models[j], str):
                out[:, j] = np.minimum(out[:, j], models[j].max_output_tokens)
        return out

    # ---- prediction --------------------------------------------------------------------
    def log2_median(self, u: np.ndarray, vectors: Sequence[LengthVector]) -> np.ndarray:
        if not vectors:
            return np.zeros((len(u), 0))
        v = self.features(u)
        return v @ np.stack([x.vector for x in vectors]).T + np.array([x.bias for x in vectors])

    def predict(self, u: np.ndarray, models: Sequence, *, form: str | None = None,
                vectors: Sequence[LengthVector | None] | None = None) -> LengthEstimate:
        """Expected output tokens for prompts with vectors `u` [N, dim] and `models` (names or ModelSpecs).

        A model without a length vector (`vector_for`, or `vectors[j]` when the caller resolved them)
        gets its registry `expected_output_tokens` on every prompt (source "registry"); a bare name
        without one is a KeyError, since there is no registry entry to fall back to. `form` "mean"
        (default: the artifact's choice) or "median".
        """
        form = form or self.meta.get("count_form", "mean")
        if form not in ("mean", "median"):
            raise ValueError(f"form must be 'mean' or 'median', got {form!r}")
        u = np.atleast_2d(np.asarray(u, dtype=np.float64))
        found = list(vectors) if vectors is not None else [self.vector_for(m) for m in models]
        known = [j for j, x in enumerate(found) if x is not None]
        n = len(u)
        log2_med = np.full((n, len(models)), np.nan)
        tokens = np.empty((n, len(models)))
        if known:
            vecs = [found[j] for j in known]
            z = np.clip(self.log2_median(u, vecs), [x.log2_range[0] for x in vecs], [x.log2_range[1] for x in vecs])
            log2_med[:, known] = z
            smear = np.array([x.log2_smear for x in vecs]) if form == "mean" else 0.0
            tokens[:, known] = np.exp2(z + smear)
            for j in known:  # never more than the model may produce
                if not isinstance(models[j], str):
                    tokens[:, j] = np.minimum(tokens[:, j], models[j].max_output_tokens)
        sources = []
        for j, (model, vec) in enumerate(zip(models, found)):
            if vec is not None:
                sources.append(vec.source)
                continue
            if isinstance(model, str):
                raise KeyError(f"model {model!r} has no length vector; pass its registry entry to fall back "
                               "to its expected_output_tokens")
            tokens[:, j] = float(model.expected_output_tokens)
            sources.append("registry")
        return LengthEstimate(tokens, sources, log2_med)


SMEAR_PRIOR_ROWS = 20.0  # the prior smearing factor counts as this many observed lengths


def own_smear(residuals: np.ndarray, prior: float) -> float:
    """log2 of the smearing factor (mean / median count) from a fit's log2 residuals, shrunk towards
    `prior` by their number: a model whose answers barely vary in length is not priced at the
    population's spread (20-token answers every time were priced 37-39 from probe results)."""
    r = np.asarray(residuals, dtype=np.float64)
    r = r[np.isfinite(r)]
    if not r.size:
        return prior
    own = float(np.log2(np.mean(np.exp2(r - np.median(r))))) + float(np.median(r))
    return (r.size * own + SMEAR_PRIOR_ROWS * prior) / (r.size + SMEAR_PRIOR_ROWS)


def task_key(name: str) -> str:
    """A task's name without its table, lower-cased with '-' read as '_': the key that makes tasks of two
    tables twins (`llmrouter…/arc_challenge` and `routerbench…/arc-challenge`; output-lengths.md, round 3)."""
    return name.split("/", 1)[-1].lower().replace("-", "_")


def length_support(tasks: np.ndarray, task_names: Sequence[str], tables: Sequence[Iterable[str]], *,
                   twins: bool = True, options: np.ndarray | None = None) -> np.ndarray:
    """[N, M]: per prompt and model, the task posterior `tasks` [N, K]'s mass on the tasks (named
    "<table>/<task>", as the artifact's task list names them) of that model's `tables` and on every task
    of another table whose `task_key` is that of one of them: a twin is the same benchmark, so a model
    measured on it is measured on that kind of prompt (`twins=False`: its own tables only).
    `options` [N] (`has_options`): twins count only on those prompts, the lettered ones: the twins'
    tables letter ARC, MMLU and MMLU-Pro's maths where LLMRouter asks them open (round 6)."""
    tasks = np.asarray(tasks, dtype=np.float64)
    tables = tuple(tuple(sorted(t)) for t in tables)
    support = np.clip(tasks @ _membership(tuple(task_names), tables, twins).T, 0.0, 1.0)
    if options is None or not twins:
        return support
    own = np.clip(tasks @ _membership(tuple(task_names), tables, False).T, 0.0, 1.0)
    return np.where(np.asarray(options, dtype=bool)[:, None], support, own)


# an options block: a line "A." / "A)" / "(A)" / "A:" with text, and the next line the same for B
OPTIONS_BLOCK = re.compile(r"(?m)^[ \t]*\(?A[.):][ \t]*\S.*\n[ \t]*\(?B[.):][ \t]*\S")


def has_options(prompts: Sequence[str]) -> np.ndarray:
    """[N] bool: which prompts carry lettered answer options, so a letter can answer them."""
    return np.array([bool(OPTIONS_BLOCK.search(p)) for p in prompts], dtype=bool)


@functools.lru_cache(maxsize=64)
def _membership(task_names: tuple[str, ...], tables: tuple[tuple[str, ...], ...], twins: bool) -> np.ndarray:
    """[M, K] 0/1: which tasks count for each model's tables; fixed per artifact, so built once, not per prompt."""
    table_of = [name.split("/", 1)[0] for name in task_names]
    keys = [task_key(name) for name in task_names]
    rows = []
    for mine in map(set, tables):
        own = [t in mine for t in table_of]
        twin_keys = {k for k, o in zip(keys, own) if o} if twins else set()
        rows.append([o or k in twin_keys for o, k in zip(own, keys)])
    member = np.array(rows, dtype=np.float64).reshape(-1, len(table_of))
    member.flags.writeable = False  # shared by every caller through the cache
    return member


def predict_output_tokens(model: LengthModel | None, u: np.ndarray, models: Sequence) -> tuple[np.ndarray, list[str]]:
    """(expected output tokens [N, M], source per model) with `model` or, when None, the registry for all."""
    if model is not None:
        estimate = model.predict(u, models)
        return estimate.tokens, estimate.sources
    n = len(np.atleast_2d(u)) if len(u) else 0
    tokens = np.empty((n, len(models)))
    for j, m in enumerate(models):
        if isinstance(m, str):
            raise KeyError(f"model {m!r}: this artifact has no length model; pass its registry entry to fall back "
                           "to its expected_output_tokens")
        tokens[:, j] = float(m.expected_output_tokens)
    return tokens, ["registry"] * len(models)


# ----------------------------------------------------------------------------- storage


def save_length_model(directory: str | Path, model: LengthModel) -> Path:
    """Write `output_lengths.npz` into an artifact directory (a reader sees the old file or the new)."""
    from pickwise.files import atomic_file

    outcome = [model.outcome[n] for n in sorted(model.outcome)]
    meta = {**model.meta, "format": OUTCOME_FORMAT if outcome else FORMAT, "feature_kind": model.features.kind,
            "names": model.names, "aliases": model.aliases, "model_tables": model.model_tables,
            "noise_var": model.noise_var}
    arrays = {"vectors": model.vectors.astype(np.float32), "bias": model.bias.astype(np.float32),
              "log2_smear": model.log2_smear.astype(np.float32), "log2_range": model.log2_range.astype(np.float32)}
    if outcome:
        meta["outcome_names"] = [v.name for v in outcome]
        meta["outcome_rows"] = {v.name: int(model.outcome_rows.get(v.name, 0)) for v in outcome}
        arrays.update({"outcome.vectors": np.stack([v.vector for v in outcome]).astype(np.float32),
                       "outcome.bias": np.array([v.bias for v in outcome], np.float32),
                       "outcome.log2_smear": np.array([v.log2_smear for v in outcome], np.float32),
                       "outcome.log2_range": np.array([v.log2_range for v in outcome], np.float32)})
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    arrays.update({f"feature.{k}": np.asarray(v, np.float32) for k, v in model.features.params.items()})
    path = Path(directory) / LENGTHS_FILE
    with atomic_file(path) as fh:
        np.savez_compressed(fh, **arrays)
    path.chmod(0o644)
    return path


def encoder_key(directory: str | Path) -> str:
    """Hash of what determines an artifact's prompt vectors u: the adapter, the prompt head's tensors and
    the model config, but not the quality model vectors (refitting those leaves u, and so lengths, valid)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    digest = hashlib.sha256()
    adapter = directory / "adapter"
    for path in sorted(adapter.rglob("*")) if adapter.is_dir() else ():
        if path.is_file() and path.name != "README.md":
            digest.update(str(path.relative_to(directory)).encode())
            digest.update(path.read_bytes())
    heads = load_file(str(directory / "heads.safetensors"))
    for name in sorted(heads):
        if not name.startswith("model_"):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(heads[name]).tobytes())
    config = json.loads((directory / "meta.json").read_text()).get("model_config", {})
    digest.update(json.dumps(config, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def load_length_model(directory: str | Path) -> LengthModel | None:
    """The artifact's length model, or None when it has none (every model then falls back to the registry).

    A length model fitted on another encoder's u (the artifact was retrained since) is ignored
    with a warning: its vectors would read coordinates that mean something else now.
    """
    path = Path(directory) / LENGTHS_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{path}: format {meta.get('format')!r}, this code reads {' and '.join(READABLE_FORMATS)}")
        params = {k.removeprefix("feature."): data[k].astype(np.float64) for k in data.files if k.startswith("feature.")}
        vectors, bias = data["vectors"].astype(np.float64), data["bias"].astype(np.float64)
        smear = data["log2_smear"].astype(np.float64)
        log2_range = data["log2_range"].astype(np.float64)
        outcome_names, outcome_rows = meta.pop("outcome_names", []), meta.pop("outcome_rows", {})
        outcome = {name: LengthVector(name, data["outcome.vectors"][k].astype(np.float64),
                                      float(data["outcome.bias"][k]), float(data["outcome.log2_smear"][k]), "outcomes",
                                      tuple(float(x) for x in data["outcome.log2_range"][k]))
                   for k, name in enumerate(outcome_names)}
    fitted_on, current = meta.get("encoder_key"), encoder_key(directory)
    if fitted_on != current:
        log.warning("%s was fitted on encoder %s, the artifact's is %s: ignored (output lengths fall back to the "
                    "registry); refit it with `python -m bench.output_length_study --write-artifact`",
                    path, fitted_on, current)
        return None
    names, aliases, tables = meta.pop("names"), meta.pop("aliases"), meta.pop("model_tables")
    noise_var = float(meta.pop("noise_var"))
    features = FeatureMap(meta.pop("feature_kind"), params)
    meta.pop("format")
    return LengthModel(names, vectors, bias, smear, noise_var, features, log2_range, aliases, tables, meta, outcome,
                       {k: int(v) for k, v in outcome_rows.items()})


# ----------------------------------------------------------------------------- training


def train_length_model(
    u: np.ndarray,
    log2_counts: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    names: list[str],
    *,
    kind: str = "linear",
    hidden: int = 64,
    extra: int = 16,
    weight_decay: float = 1e-4,
    lr: float = 1e-2,
    max_steps: int = 3000,
    patience: int = 100,
    seed: int = 0,
    pooled: np.ndarray | None = None,
    pooled_dims: int = 16,
) -> tuple[LengthModel, dict]:
    """Fit (l, c) per model and, for "mlp", the shared g(u): full-batch AdamW on the squared error of log2
    counts over observed cells (NaN = no answer) of the `train` rows, early stopping on the `val` rows.

    `pooled` with kind "pooled" fits v = [u, W LN(pooled)] instead: a reference only (the service's
    encoder does not output the pooled embedding), so its FeatureMap cannot be saved.
    Returns the model and a history dict (best step, validation loss).
    """
    import torch

    torch.manual_seed(seed)
    u_t = torch.as_tensor(np.asarray(u, np.float32))
    y = torch.as_tensor(np.nan_to_num(np.asarray(log2_counts, np.float32)))
    mask = torch.as_tensor(np.isfinite(log2_counts))
    m = y.shape[1]
    dim = u_t.shape[1]
    d_extra = {"linear": 0, "mlp": extra, "pooled": pooled_dims}[kind]
    modules = torch.nn.ModuleDict()
    if kind == "mlp":
        modules["g"] = torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, hidden), torch.nn.GELU(),
                                           torch.nn.Linear(hidden, extra))
    if kind == "pooled":
        if pooled is None:
            raise ValueError("kind 'pooled' needs the pooled embeddings")
        pooled_t = torch.as_tensor(np.asarray(pooled, np.float32))
        modules["g"] = torch.nn.Sequential(torch.nn.LayerNorm(pooled_t.shape[1]),
                                           torch.nn.Linear(pooled_t.shape[1], pooled_dims, bias=False))
    # start every model at its mean log2 count over the training rows, vectors at 0
    tr = torch.as_tensor(np.asarray(train))
    counts = (mask[tr]).sum(0).clamp(min=1)
    bias0 = (y[tr] * mask[tr]).sum(0) / counts
    vec = torch.nn.Parameter(torch.zeros(m, dim + d_extra))
    bias = torch.nn.Parameter(bias0.clone())
    groups = [{"params": [vec], "weight_decay": weight_decay}, {"params": [bias], "weight_decay": 0.0}]
    if len(modules):
        groups.append({"params": list(modules.parameters()), "weight_decay": 1e-3})
    optimizer = torch.optim.AdamW(groups, lr=lr)

    def features(rows):
        x = u_t[rows]
        if kind == "mlp":
            x = torch.cat([x, modules["g"](x)], dim=1)
        elif kind == "pooled":
            x = torch.cat([x, modules["g"](pooled_t[rows])], dim=1)
        return x

    def loss(rows):
        err = (features(rows) @ vec.T + bias - y[rows]) ** 2
        mk = mask[rows]
        return (err * mk).sum() / mk.sum()

    va = torch.as_tensor(np.asarray(val))
    best = (math.inf, None, 0)
    for step in range(1, max_steps + 1):
        optimizer.zero_grad()
        batch_loss = loss(tr)
        batch_loss.backward()
        optimizer.step()
        if step % 10 == 0:
            with torch.no_grad():
                val_loss = float(loss(va))
            if val_loss < best[0] - 1e-5:
                best = (val_loss, {"vec": vec.detach().clone(), "bias": bias.detach().clone(),
                                   "modules": {k: t.clone() for k, t in modules.state_dict().items()}}, step)
            elif step - best[2] >= patience:
                break
    vec.data, bias.data = best[1]["vec"], best[1]["bias"]
    modules.load_state_dict(best[1]["modules"])
    with torch.no_grad():
        resid = (features(tr) @ vec.T + bias - y[tr]).numpy()
    mk = mask[tr].numpy()
    # smearing: mean of 2^(observed - predicted) per model, over its training answers
    smear = np.array([np.log2(np.mean(np.exp2(-resid[mk[:, j], j]))) if mk[:, j].any() else 0.0 for j in range(m)])
    noise_var = float(np.sum(resid[mk] ** 2) / mk.sum())
    params = {}
    if kind == "mlp":
        g = modules["g"]
        params = {"ln_w": g[0].weight, "ln_b": g[0].bias, "a_w": g[1].weight, "a_b": g[1].bias,
                  "b_w": g[3].weight, "b_b": g[3].bias}
        params = {k: t.detach().numpy().astype(np.float64) for k, t in params.items()}
    y_train = np.where(np.asarray(mask[tr]), np.asarray(log2_counts)[np.asarray(train)], np.nan)
    seen = np.isfinite(y_train).any(axis=0)
    lo = np.where(seen, np.nanmin(np.where(np.isfinite(y_train), y_train, np.inf), axis=0), 0.0)
    hi = np.where(seen, np.nanmax(np.where(np.isfinite(y_train), y_train, -np.inf), axis=0), np.inf)
    model = LengthModel(list(names), vec.detach().numpy().astype(np.float64), bias.detach().numpy().astype(np.float64),
                        smear, noise_var, FeatureMap(kind if kind != "pooled" else "linear", params),
                        np.column_stack([lo, hi]))
    history = {"best_step": best[2], "val_loss": best[0], "train_noise_var": noise_var}
    if kind == "pooled":
        with torch.no_grad():
            history["features"] = torch.cat([u_t, modules["g"](pooled_t)], dim=1).numpy().astype(np.float64)
    return model, history
