"""QualityPredictor: calibrated P(model answers well) for prompts x registered models.

A registered model is scored through a model vector (e, b):
- trained-in models (by name or alias) use the vectors learned in training;
- a refitted artifact (`pickwise fit`) holds vectors fitted to observed outcomes: they replace
  the trained vectors of those models, and score models that have outcomes but no trained vector;
- a new model with probe results gets vectors fitted to those results (`predictor.coldstart`),
  cached by the content of its results, so registering it needs no retraining;
- a model with only a prior (`similar_to`, `benchmark_score`) or nothing at all gets a prior
  vector and is reported as low-confidence.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pickwise.predictor import CPU_ONLY_PRECISIONS, PRECISIONS
from pickwise.predictor.artifact import (
    artifact_version,
    load_model,
    read_outcome_vectors,
    read_probe_vectors,
    read_splits,
)
from pickwise.predictor.backbone import encode_texts, length_buckets, load_backbone, load_tokenizer, pad_batch
from pickwise.predictor.data import RoutingTable, split_labels

log = logging.getLogger("pickwise.predictor")
MIN_REFERENCE_MODELS = 5  # fewer same-table models than this: the cold-start prior uses every trained model
MAX_PROMPT_CHARS = 200_000  # longer input is cut before tokenising (the model reads 128 tokens anyway)
OPEN_ENDED = 0.5  # a prompt read as open-ended at least this much gets open-ended answer lengths
OPEN_ENDED_TABLE = "alpacaeval_57models"  # the table of open-ended instructions and their answers' lengths
UNREADABLE_AT = 0.5  # a prompt with at least this share of [UNK] tokens is unreadable: every quality is a guess
MIN_OUTCOME_ROWS = 50  # a vector fitted to fewer outcomes than this (and no trained vector) is low-confidence
OPEN_ABILITY_PRIOR = 1.0  # precision of the prior on a model's open-ended place, around its scale ability


@torch.no_grad()
def encode_prompt_features(
    model,
    tokenizer,
    prompts: Sequence[str],
    device="cpu",
    max_len: int = 128,
    head_frac: float = 0.4,
    batch_size: int = 64,
    progress: bool = False,
    prompt_encoder=None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, list[bool], np.ndarray]:
    """Prompt vectors u [N, dim], task posteriors [N, n_tasks] and pooled embeddings [N, width]
    (both None without tasks), which prompts were cut to `max_len` tokens, and the share of each
    prompt's tokens that are [UNK] (`unreadable`).

    Batched in length buckets, so short prompts are not padded to the longest one.
    `prompt_encoder` (the ONNX Runtime int8 graph of `predictor.onnx_encoder`) replaces the torch
    model when given; its `features(input_ids, mask)` gives both outputs.
    """
    if model.training:  # eval() walks every module, a cost on every select: only when needed
        model.eval()
    texts = [p[:MAX_PROMPT_CHARS] for p in prompts]
    encoded = encode_texts(tokenizer, texts, max_len, head_frac)
    out = np.zeros((len(texts), model.config.dim), dtype=np.float32)
    tasks = np.zeros((len(texts), model.config.n_tasks), dtype=np.float32) if model.config.uses_tasks else None
    pooled_all = None
    buckets = length_buckets([len(x) for x in encoded.ids], batch_size)
    # the bar only on a terminal (disable=None): a logged or piped stderr kept its frames, glued to the next line
    for batch in tqdm(buckets, desc="predicting", disable=None if progress else True, leave=False, unit="batch"):
        input_ids, mask = pad_batch([encoded.ids[i] for i in batch])
        if prompt_encoder is not None:
            u, posterior, pooled = _encoder_features(prompt_encoder, input_ids, mask)
            out[batch] = u
            if tasks is not None and posterior is not None:
                tasks[batch] = posterior
                pooled_all = _store(pooled_all, batch, pooled, len(texts))
            continue
        input_ids, mask = input_ids.to(device), mask.to(device)
        pooled = model.top(model.stem(input_ids, mask), mask)
        u, logits = model.prompt_outputs(pooled)
        out[batch] = u.float().cpu().numpy()
        if tasks is not None:
            tasks[batch] = torch.softmax(logits[0].float(), dim=-1).cpu().numpy()
            pooled_all = _store(pooled_all, batch, pooled.float().cpu().numpy(), len(texts))
    return out, tasks, pooled_all, encoded.truncated, np.asarray(encoded.unknown, dtype=np.float64)


def _store(buffer, rows, values, n):
    if buffer is None:
        buffer = np.zeros((n, values.shape[1]), dtype=np.float32)
    buffer[rows] = values
    return buffer


def _encoder_features(prompt_encoder, input_ids, mask):
    """(u, task posterior, pooled) from an external encoder: `.features` if it has one, else u only."""
    features = getattr(prompt_encoder, "features", None)
    if features is None and isinstance(prompt_encoder, functools.partial):
        inner = getattr(prompt_encoder.func, "features", None)
        if inner is not None:
            return inner(input_ids, mask, **prompt_encoder.keywords)
    if features is not None:
        return features(input_ids, mask)
    return prompt_encoder(input_ids, mask), None, None


def encode_prompt_vectors(model, tokenizer, prompts: Sequence[str], device="cpu", max_len: int = 128,
                          head_frac: float = 0.4, batch_size: int = 64, progress: bool = False,
                          prompt_encoder=None) -> tuple[np.ndarray, list[bool]]:
    """Prompt vectors u [N, dim] and truncation flags (`encode_prompt_features` without the posteriors)."""
    u, _, _, truncated, _ = encode_prompt_features(model, tokenizer, prompts, device, max_len, head_frac, batch_size,
                                             progress, prompt_encoder)
    return u, truncated


@dataclass(frozen=True)
class PromptFeatures:
    """What the encoder pass gives per prompt: u, the task posterior and the pooled embedding (None
    without tasks), truncation, and what the text shows: the share of [UNK] tokens and whether it
    carries lettered answer options (`lengths.has_options`) (None: not known, e.g. cached features)."""

    u: np.ndarray  # [N, dim]
    tasks: np.ndarray | None  # [N, n_tasks], rows sum to 1
    pooled: np.ndarray | None  # [N, width], what the task classifier reads
    truncated: list[bool]
    unknown: np.ndarray | None = None  # [N] in [0, 1]
    options: np.ndarray | None = None  # [N] bool

    def __len__(self) -> int:
        return len(self.u)

    def __getitem__(self, rows) -> PromptFeatures:
        """The features of some prompts (an index, a slice or a list of indices); always 2-D."""
        idx = np.atleast_1d(np.arange(len(self.u))[rows])

        def pick(a):
            return None if a is None else a[idx]

        return PromptFeatures(pick(self.u), pick(self.tasks), pick(self.pooled), [bool(self.truncated[i]) for i in idx],
                              pick(self.unknown), pick(self.options))

    @staticmethod
    def concat(parts: Sequence[PromptFeatures]) -> PromptFeatures:
        """Rows of several encoder calls, in order."""
        def stack(arrays):
            return None if arrays[0] is None else np.concatenate(arrays)

        return PromptFeatures(stack([f.u for f in parts]), stack([f.tasks for f in parts]),
                              stack([f.pooled for f in parts]), [c for f in parts for c in f.truncated],
                              stack([f.unknown for f in parts]), stack([f.options for f in parts]))


@dataclass
class Prediction:
    """Calibrated qualities plus the evidence behind each (prompt, model) value.

    `support[i, j]` in [0, 1]: the share of prompt i that reads as tasks model j has training
    results on (NaN: j is not a trained model, e.g. probe-fitted or a prior; see `sources`).
    `rows[i, j]`: the task-posterior-weighted count of j's training rows behind it.
    `low_confidence[i]`: {model: reason} for predictions with support < `predictor.scale.LOW_SUPPORT`
    or models scored from a prior. `trained`/`scale`: the per-table trained probability and the joint
    scale's probability that `quality` blends (by support).
    """

    models: list[str]
    quality: np.ndarray  # [N, M]
    support: np.ndarray  # [N, M]
    rows: np.ndarray  # [N, M]
    trained: np.ndarray  # [N, M]
    scale: np.ndarray  # [N, M]
    open_ended: np.ndarray  # [N] p(the prompt is of no priced table's kind)
    top_task: list[str]  # [N] the task the prompt reads as most
    low_confidence: list[dict[str, str]]  # [N]
    truncated: list[bool]
    sources: list[str]  # [M] ModelVector.source
    unknown: np.ndarray | None = None  # [N] share of the prompt's tokens the encoder's vocabulary lacks

    @property
    def unreadable(self) -> list[bool]:
        """[N] prompts the encoder could not read (`UNREADABLE_AT`): their qualities are all low-confidence."""
        if self.unknown is None:
            return [False] * len(self.quality)
        return [bool(x >= UNREADABLE_AT) for x in self.unknown]


@dataclass(frozen=True)
class OutcomeEvidence:
    """What a model's outcomes (`pickwise fit`) say beyond its vector: where they were, so its predictions
    get support there as from training rows, and where it stands on the joint scale.

    task_rows [K]: its outcomes per scale task (the prompts' task posteriors, summed over the part of
    each prompt that is not open-ended); open_rows: the open-ended part's count; ability: its place on
    the joint scale from all its outcomes (None for a trained model, which has one from training);
    open_ability: its place from its open-ended outcomes, which is where they put it on such prompts."""

    task_rows: np.ndarray
    open_rows: float
    ability: float | None
    open_ability: float

    def to_dict(self) -> dict:
        return {"task_rows": [round(float(x), 4) for x in self.task_rows], "open_rows": round(self.open_rows, 4),
                "ability": self.ability, "open_ability": self.open_ability}

    @classmethod
    def from_dict(cls, data: dict, n_tasks: int, name: str) -> OutcomeEvidence:
        rows = np.asarray(data["task_rows"], dtype=np.float64)
        if rows.shape != (n_tasks,):
            raise ValueError(f"outcome evidence of {name!r} counts {rows.shape} tasks, the scale has {n_tasks}")
        ability = data.get("ability")
        return cls(rows, float(data["open_rows"]), None if ability is None else float(ability),
                   float(data["open_ability"]))


@dataclass(frozen=True)
class ModelVector:
    """How one registered model is scored: its vector, bias, and why it is low-confidence (if it is)."""

    name: str
    vector: np.ndarray
    bias: float
    source: str  # "trained" | "outcomes" | "probe" | "similar_to" | "benchmark_score" | "population"
    low_confidence: str | None = None
    index: int | None = None  # row among the artifact's trained models ("trained", or the "similar_to" target's)
    # "probe" with a one-scale layer: its results per scale task (where its evidence is) and its ability
    # on the joint scale, so its predictions get support and are placed on the scale where it has none;
    # "benchmark_score" / "population": its ability alone (placed as the average trained model, shifted)
    task_rows: np.ndarray | None = None
    ability: float | None = None
    outcomes: OutcomeEvidence | None = None  # "trained" or "outcomes" refitted by `pickwise fit`


class QualityPredictor:
    """Loads an artifact once; thread-safe `predict` (torch inference runs without shared mutable state)."""

    def __init__(self, model, tokenizer, meta: dict, directory: Path, device="cpu", precision: str = "fp32",
                 prompt_encoder=None):
        self.model = model
        self.precision = precision  # as resolved by load_predictor: "fp32" | "bf16" | "int8" | "onnx-int8"
        self.prompt_encoder = prompt_encoder  # computes u instead of `model` (onnx-int8)
        self.tokenizer = tokenizer
        self.meta = meta
        self.directory = Path(directory)
        self.device = torch.device(device)
        self.version = artifact_version(directory)
        self.model_names: list[str] = list(meta["model_names"])
        self.temperature = float(meta["temperature"])
        self._index = {name: j for j, name in enumerate(self.model_names)}
        for alias, name in meta.get("aliases", {}).items():
            self._index.setdefault(alias, self._index[name])
        self._vectors = model.model_vectors.detach().cpu().numpy().astype(np.float64)
        self._bias = model.model_bias.detach().cpu().numpy().astype(np.float64)
        self._probe = read_probe_vectors(directory)
        from pickwise.predictor.scale import OneScale

        self.scale = OneScale.load(directory) if meta["model_config"].get("n_tasks") else None
        if self.scale is not None and self.scale.model_names != self.model_names:
            raise ValueError(f"{directory}: scale.json was fitted for other models than meta.json lists")
        self._fitted: dict[str, tuple[np.ndarray, float]] = {}
        self._splits: dict | None = None
        self._lock = threading.Lock()
        # refitted vectors: the encoder they belong to is the base artifact's (a refit never changes it)
        self.encoder_version: str = meta.get("encoder_version") or self.version
        self.trained_vectors = (self._vectors, self._bias)  # as training left them, the refit's reference population
        self._outcome: dict[str, ModelVector] = {}
        self._outcome_evidence: dict[int, OutcomeEvidence] = {}  # trained models', by index
        outcome_vectors = read_outcome_vectors(directory)
        if outcome_vectors:
            self._apply_outcome_vectors(outcome_vectors)
        from pickwise.predictor.lengths import load_length_model

        self.lengths = load_length_model(directory)  # None: every model's output length is its registry prior
        self._length_fits: dict = {}  # probe-answer length fits, by registry version and model (or content)

    def _apply_outcome_vectors(self, models: dict[str, dict]) -> None:
        """Score the models of `models` ({name: {"vector", "bias", "rows"}}) from those vectors."""
        self._vectors, self._bias = self._vectors.copy(), self._bias.copy()
        self._outcome, self._outcome_evidence = dict(self._outcome), dict(self._outcome_evidence)
        for name, fitted in models.items():
            vector, bias = np.asarray(fitted["vector"], dtype=np.float64), float(fitted["bias"])
            if vector.shape != self._vectors.shape[1:]:
                raise ValueError(f"outcome vector of {name!r} has {vector.shape} values, the artifact's have "
                                 f"{self._vectors.shape[1:]}")
            evidence = None
            if fitted.get("evidence") and self.scale is not None:
                evidence = OutcomeEvidence.from_dict(fitted["evidence"], len(self.scale.tasks), name)
            j = self._index.get(name)
            if j is None:  # a registry entry that renamed a trained model: `refit` says its trained name
                j = self._index.get(fitted.get("trained_as"))
            if j is not None:
                self._vectors[j], self._bias[j] = vector, bias
                if evidence is not None:
                    self._outcome_evidence[j] = evidence
                continue
            rows = int(fitted.get("rows", 0))
            low = None if rows >= MIN_OUTCOME_ROWS else f"fitted to only {rows} outcomes"
            self._outcome[name] = ModelVector(name, vector, bias, "outcomes", low, outcomes=evidence)

    def with_outcome_vectors(self, models: dict[str, dict]) -> QualityPredictor:
        """A predictor sharing this one's encoder whose models in `models` are scored from those
        vectors, as the artifact `pickwise fit` writes would be (this one is unchanged)."""
        other = copy.copy(self)
        other._apply_outcome_vectors(models)
        return other

    def without_outcomes(self, names: Iterable[str]) -> QualityPredictor:
        """A copy whose models `names` are scored as before any refit (trained, probe or prior vectors,
        no outcome evidence or lengths): `pickwise fit` starts from it, so that refitting a refit to the
        same store counts each outcome once. Other models keep what an earlier refit gave them."""
        other = copy.copy(self)
        other._vectors, other._bias = self._vectors.copy(), self._bias.copy()
        other._outcome, other._outcome_evidence = dict(self._outcome), dict(self._outcome_evidence)
        trained, trained_bias = self.trained_vectors
        names = set(names)
        for name in names:
            j = self._index.get(name)
            if j is not None:
                other._vectors[j], other._bias[j] = trained[j], trained_bias[j]
                other._outcome_evidence.pop(j, None)
            other._outcome.pop(name, None)
        if self.lengths is not None:
            other.lengths = self.lengths.without_outcome(names)
            other._length_fits = {}
        return other

    def with_outcome_lengths(self, vectors: dict, rows: dict[str, int]) -> QualityPredictor:
        """A predictor sharing this one's encoder whose models in `vectors` ({name: LengthVector}) have those
        outcome length vectors, as the artifact `pickwise fit` writes would (this one is unchanged)."""
        other = copy.copy(self)
        other.lengths = self.lengths.with_outcome(vectors, rows)
        other._length_fits = {}
        return other

    @property
    def autocast(self) -> torch.dtype | None:
        """The dtype the encoder runs under autocast to (None: as loaded)."""
        return torch.bfloat16 if self.precision == "bf16" else None

    @property
    def parallel_lanes(self) -> int:
        """How many `prompt_vectors(..., single_thread=True)` calls are worth running at once.

        The int8 ONNX encoder: its thread count, each call on one thread (see OnnxPromptEncoder).
        A torch encoder: 1, since two threads running torch make its OpenMP workers throttle and
        every call slower (api/service.py, `PickwiseService.encode`).
        """
        return self.prompt_encoder.threads if self.prompt_encoder is not None else 1

    # ---- scoring -------------------------------------------------------------------------
    def prompt_vectors(
        self, prompts: Sequence[str], progress: bool = False, batch_size: int = 64, single_thread: bool = False
    ) -> tuple[np.ndarray, list[bool]]:
        """Prompt vectors and truncation flags; `single_thread` runs the ONNX encoder on one thread,
        for callers that run several batches at once (a torch encoder ignores it)."""
        f = self.prompt_features(prompts, progress, batch_size, single_thread)
        return f.u, f.truncated

    def prompt_features(
        self, prompts: Sequence[str], progress: bool = False, batch_size: int = 64, single_thread: bool = False
    ) -> PromptFeatures:
        """u, task posterior and truncation flags from one encoder pass (torch or ONNX alike).

        The service should encode with this and pass `tasks` on to `probabilities`, which then
        applies the one-scale layer (the posterior costs nothing extra: it is how u is made)."""
        if self.precision in CPU_ONLY_PRECISIONS:
            # dynamic int8 quantises a whole batch's activations with one scale, so a prompt's
            # vector would depend on its batch-mates: each prompt is encoded alone
            batch_size = 1
        cfg = self.model.config
        encoder = self.prompt_encoder
        if single_thread and encoder is not None:
            encoder = functools.partial(encoder, single_thread=True)
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            u, tasks, pooled, truncated, unknown = encode_prompt_features(
                self.model, self.tokenizer, prompts, self.device, cfg.max_len, cfg.head_frac, batch_size, progress,
                encoder,
            )
        from pickwise.predictor.lengths import has_options

        return PromptFeatures(u, tasks, pooled, truncated, unknown, has_options(prompts))

    def predict(
        self,
        prompts: Sequence[str],
        models: Sequence,
        *,
        snapshot=None,
        progress: bool = False,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Calibrated probabilities [len(prompts), len(models)].

        `models` holds names/aliases of trained models or registry ModelSpecs (then `snapshot`
        supplies probe results of models the artifact never saw).
        """
        return self.predict_detailed(prompts, models, snapshot=snapshot, progress=progress, batch_size=batch_size)[0]

    def predict_detailed(
        self, prompts: Sequence[str], models: Sequence, *, snapshot=None, progress: bool = False, batch_size: int = 64
    ) -> tuple[np.ndarray, list[bool]]:
        """`predict` plus, per prompt, whether it was cut to the model's input length."""
        result = self.predict_with_evidence(prompts, models, snapshot=snapshot, progress=progress,
                                            batch_size=batch_size)
        return result.quality, result.truncated

    def predict_with_evidence(
        self, prompts: Sequence[str], models: Sequence, *, snapshot=None, progress: bool = False, batch_size: int = 64
    ) -> Prediction:
        """Qualities with their support, training-row counts and low-confidence reasons (`Prediction`)."""
        vectors = [self.model_vector(m, snapshot) for m in models]
        if not prompts:
            empty = np.zeros((0, len(vectors)))
            return Prediction([v.name for v in vectors], empty, empty, empty, empty, empty, np.zeros(0), [], [], [],
                              [v.source for v in vectors])
        f = self.prompt_features(prompts, progress=progress, batch_size=batch_size)
        return self.evidence(f.u.astype(np.float64), vectors, f.tasks, f.truncated, f.pooled, f.unknown)

    def probabilities(self, u: np.ndarray, vectors: Sequence[ModelVector], tasks: np.ndarray | None = None,
                      pooled: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities for precomputed prompt vectors.

        With the task posteriors and pooled embeddings (`prompt_features().tasks`, `.pooled`) and a
        scale in the artifact, trained models go through the one-scale layer (`predictor.scale`);
        without them, sigmoid((u.e + b) / T).
        """
        if tasks is not None and self.scale is not None:
            return self.evidence(u, vectors, tasks, pooled=pooled).quality
        if not vectors:
            return np.zeros((len(u), 0))
        e = np.stack([v.vector for v in vectors])
        b = np.array([v.bias for v in vectors])
        return 1.0 / (1.0 + np.exp(-(u @ e.T + b) / self.temperature))

    def evidence(self, u: np.ndarray, vectors: Sequence[ModelVector], tasks: np.ndarray | None,
                 truncated: list[bool] | None = None, pooled: np.ndarray | None = None,
                 unknown: np.ndarray | None = None) -> Prediction:
        """`Prediction` for precomputed features (see `prompt_features`); `unknown`, their share of
        [UNK] tokens, marks every quality of an unreadable prompt low-confidence."""
        from pickwise.predictor.scale import LOW_SUPPORT, sigmoid

        u = np.asarray(u, dtype=np.float64)
        n, names = len(u), [v.name for v in vectors]
        own = (u @ np.stack([v.vector for v in vectors]).T + np.array([v.bias for v in vectors])) / self.temperature \
            if vectors else np.zeros((n, 0))
        quality, trained, scale_p = sigmoid(own), sigmoid(own), sigmoid(own)
        scale_z = np.full((n, len(vectors)), np.nan)  # logits on the joint scale, for the models placed there
        support = np.full((n, len(vectors)), np.nan)
        rows = np.full((n, len(vectors)), np.nan)
        p_open = np.zeros(n)
        top = [""] * n
        low: list[dict[str, str]] = [{} for _ in range(n)]
        if tasks is not None and self.scale is not None:
            tasks = np.asarray(tasks, dtype=np.float64)
            all_logits = (u @ self._vectors.T + self._bias) / self.temperature
            out = self.scale.combine(all_logits, tasks, u, pooled)
            p_open = out["open_ended"]
            top = [self.scale.tasks[k] for k in tasks.argmax(1)]
            for col, v in enumerate(vectors):
                if v.outcomes is not None or (v.index is None and v.task_rows is not None):
                    self._place_with_evidence(col, v, own, out, tasks, quality, scale_z, support, rows, low, top)
                    continue
                if v.index is None and v.ability is not None:  # a prior only: the average model, shifted
                    self._place_prior(col, v, own, out, tasks, quality, scale_z)
                    continue
                if v.index is None:
                    continue
                j = v.index
                quality[:, col] = sigmoid(out["logits"][:, j])
                scale_z[:, col] = out["scale_logits"][:, j]
                support[:, col], rows[:, col] = out["support"][:, j], out["rows"][:, j]
                for i in np.flatnonzero(support[:, col] < LOW_SUPPORT):
                    low[i][v.name] = self.scale.reason(j, support[i, col], p_open[i], top[i])
            # a similar_to model is scored as its target, whose evidence is not its own (its reason, set
            # below, replaces the target's)
            for col, v in enumerate(vectors):
                if v.source == "similar_to":
                    support[:, col] = rows[:, col] = np.nan
        for v in vectors:
            if v.low_confidence:
                for i in range(n):
                    low[i][v.name] = v.low_confidence
        placed = ~np.isnan(scale_z).any(axis=0)
        scale_p[:, placed] = sigmoid(scale_z[:, placed])
        if unknown is not None:
            unknown = np.asarray(unknown, dtype=np.float64)
            bad = np.flatnonzero(unknown >= UNREADABLE_AT)
            if bad.size and placed.any():
                # the encoder read nothing, so no task evidence applies: support 0, and a model placed on
                # the joint scale gets its place there (general ability), not its logit on an empty prompt
                quality[np.ix_(bad, placed)] = sigmoid(scale_z[np.ix_(bad, placed)] / self.scale.temperature)
                support[np.ix_(bad, placed)] = 0.0
                rows[np.ix_(bad, placed)] = 0.0
            for i in bad:
                why = unreadable_reason(float(unknown[i]))
                low[i] = {v.name: why + (f"; {v.low_confidence}" if v.low_confidence else "") for v in vectors}
        return Prediction(names, quality, support, rows, trained, scale_p, p_open, top, low,
                          list(truncated) if truncated is not None else [False] * n, [v.source for v in vectors],
                          unknown)

    def reads_as(self, tasks: np.ndarray | None, top: int = 3, least: float = 0.05) -> list[dict[str, float]]:
        """[N] the tasks ("table/task") each prompt reads as most (up to `top`, each at least `least` of
        the posterior): the level of its qualities is those tasks' pass rates as their tables grade."""
        names = self.meta.get("tasks") or []
        if tasks is None or not names:
            return [{} for _ in range(0 if tasks is None else len(tasks))]
        out = []
        for row in np.asarray(tasks, dtype=np.float64):
            order = np.argsort(-row, kind="stable")[:top]
            out.append({names[k]: round(float(row[k]), 3) for k in order if row[k] >= least})
        return out

    def scale_reading(self, u: np.ndarray, tasks: np.ndarray, pooled: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(open-ended cut [N], difficulty [N]) of prompts as the one-scale layer reads them off the trained
        models, which is where `evidence` places a model on them."""
        u, tasks = np.asarray(u, dtype=np.float64), np.asarray(tasks, dtype=np.float64)
        out = self.scale.combine((u @ self._vectors.T + self._bias) / self.temperature, tasks, u, pooled)
        return self.scale.open_cut(out["open_ended"]), out["difficulty"]

    def outcome_evidence(self, index: int | None, tasks: np.ndarray, cut: np.ndarray, difficulty: np.ndarray,
                         scores: np.ndarray) -> OutcomeEvidence:
        """The `OutcomeEvidence` of `scores` on prompts with task posteriors `tasks` and `scale_reading`
        (cut, difficulty), for trained model `index` (None: a model without a trained vector)."""
        from pickwise.predictor.scale import ability_at

        if index is None:
            ability = ability_at(difficulty, scores, start=float(np.median(self.scale.ability)))
        else:
            ability = float(self.scale.ability[index])
        # one logit of prior spread around where the tables put it: a few open-ended outcomes move it a little
        open_ability = ability_at(difficulty, scores, cut, start=ability, centre=ability, l2=OPEN_ABILITY_PRIOR)
        return OutcomeEvidence(((1.0 - cut)[:, None] * np.asarray(tasks, dtype=np.float64)).sum(0),
                               float(cut.sum()), None if index is not None else ability, open_ability)

    def _place_prior(self, col, v: ModelVector, own, out, tasks, quality, scale_z):
        """A model with only a prior (`benchmark_score`, or nothing): the average trained model shifted by its
        bias, so where the trained models are supported (on average) its own logit stands, and elsewhere
        (open-ended prompts) it is placed on the joint scale as they are. With its raw logit there, one at
        gpt-4's mean quality over the probe set beat gpt-4 on every poem. It has no support of its own."""
        from pickwise.predictor.scale import sigmoid

        scale = self.scale
        s = scale.support(tasks, out["open_ended"], scale.rows_weight(scale.rows).mean(0))[:, 0]
        place = v.ability - out["difficulty"]
        quality[:, col] = sigmoid((s * own[:, col] + (1.0 - s) * place) / scale.temperature)
        scale_z[:, col] = place

    def _place_with_evidence(self, col, v: ModelVector, own, out, tasks, quality, scale_z, support, rows, low, top):
        """A model with evidence beyond training rows: probe results, whose tables support it as a trained
        model's training rows do, and outcomes (`pickwise fit`), which count as rows where they were,
        beside training rows or probe tables, and support it on open-ended prompts, where they also move
        its place on the joint scale. Where it has no support, its own logit is blended towards its place
        on the scale minus the prompt's difficulty. Without either this is `OneScale.combine`'s blend."""
        from pickwise.predictor.scale import LOW_SUPPORT, sigmoid

        scale, ev, j = self.scale, v.outcomes, v.index
        p_open, cut = out["open_ended"], scale.open_cut(out["open_ended"])
        outcome_rows = ev.task_rows if ev is not None else np.zeros(len(scale.tasks))
        if j is not None:
            task_rows = scale.rows[j] + outcome_rows
            weight = scale.rows_weight(task_rows)
            place, centre = out["scale_logits"][:, j], float(scale.ability[j])
        elif v.task_rows is not None:  # registered from probe results: they keep the support they gave it
            task_rows = v.task_rows + outcome_rows
            weight = np.maximum(scale.table_cover(v.task_rows), scale.rows_weight(outcome_rows))
            ability = v.ability
            if ev is not None:
                n_probe, n_outcomes = float(v.task_rows.sum()), float(ev.task_rows.sum() + ev.open_rows)
                ability = (n_probe * v.ability + n_outcomes * ev.ability) / (n_probe + n_outcomes)  # by count
            place, centre = ability - out["difficulty"], float(ev.ability if ev is not None else ability)
        else:
            task_rows = ev.task_rows
            weight = scale.rows_weight(task_rows)
            place, centre = ev.ability - out["difficulty"], float(ev.ability)
        s = scale.support(tasks, p_open, weight)[:, 0]
        logit = s * own[:, col] + (1.0 - s) * place
        open_rows = ev.open_rows if ev is not None else 0.0
        o = cut * float(scale.rows_weight(open_rows))
        if ev is not None:  # the open-ended place: what its open-ended outcomes showed, relative to the fit's centre
            logit = logit + o * (ev.open_ability - centre)
        quality[:, col] = sigmoid(logit / scale.temperature)
        scale_z[:, col] = place
        support[:, col] = s + o
        rows[:, col] = tasks @ task_rows * (1.0 - p_open) + cut * open_rows
        for i in np.flatnonzero(support[:, col] < LOW_SUPPORT):
            low[i][v.name] = (scale.probe_reason(v.name, s[i], p_open[i], top[i], v.task_rows) if ev is None else
                              scale.outcome_reason(v.name, support[i, col], p_open[i], top[i], ev, j, v.task_rows))

    @property
    def set_rho(self) -> float:
        """The fitted common-mode failure share for `predictor.scale.set_quality` (0: independent)."""
        return float(self.scale.set_rho) if self.scale is not None else 0.0

    def output_tokens(self, u: np.ndarray, models: Sequence, open_ended: np.ndarray | None = None,
                      snapshot=None, tasks: np.ndarray | None = None, *,
                      options: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """Expected output tokens [N, M] (cl100k_base) for prompt vectors u and models (names or ModelSpecs),
        and per model its source: "outcomes" | "probe" | "trained" | "fitted" | "registry" (`length_vector`).
        `snapshot` supplies the probe answers' lengths of models registered from probe results.

        With the task posterior `tasks` (`prompt_features().tasks`), a model whose lengths come only from
        training rows is pulled towards the pool's typical count on prompts of tables it has no lengths
        on, by its length support (`LengthModel.toward_pool`; a task of another table under the same name
        counts as its own on prompts with lettered `options` only: `lengths.has_options` of the prompts'
        texts; None counts such twins on every prompt).

        On prompts that read as open-ended (`open_ended` >= 0.5, `Prediction.open_ended`), a model whose
        lengths come only from benchmark answers (a letter, a number) would be priced for a one-token
        essay: its estimate is raised to at least the median of the models measured on open-ended
        instructions, for the same prompt. Only a model measured on open-ended answers alone keeps its own
        estimate there: one that also has benchmark answers (gpt-3.5-turbo-1106: RouterBench and
        AlpacaEval) gets a vector pulled to their letters, which priced a poem at 9 tokens."""
        from pickwise.predictor.lengths import predict_output_tokens

        if self.lengths is None:
            return predict_output_tokens(None, u, models)
        found = [self.length_vector(m, snapshot) for m in models]
        estimate = self.lengths.predict(u, models, vectors=found)
        tokens, sources = estimate.tokens, estimate.sources
        if tasks is not None and self.meta.get("tasks"):
            tokens = self.lengths.toward_pool(u, tasks, self.meta["tasks"], models, found, tokens, options=options)
        if open_ended is None:
            return tokens, sources
        rows = np.flatnonzero(np.asarray(open_ended) >= OPEN_ENDED)
        pool = [n for n, tables in self.lengths.model_tables.items() if OPEN_ENDED_TABLE in tables]
        only_open = {n for n in pool if set(self.lengths.model_tables[n]) == {OPEN_ENDED_TABLE}}
        if rows.size and pool:
            typical = np.median(self.lengths.predict(np.atleast_2d(u)[rows], pool).tokens, axis=1)
            for j, m in enumerate(models):
                name = m if isinstance(m, str) else m.name
                if name not in only_open:
                    cap = np.inf if isinstance(m, str) else m.max_output_tokens
                    tokens[rows, j] = np.minimum(np.maximum(tokens[rows, j], typical), cap)
        return tokens, sources

    def length_vector(self, model, snapshot=None):
        """The model's output-length vector (`predictor.lengths.LengthVector`), or None when it has no length
        evidence (its registry `expected_output_tokens` is used). In order: the vector `pickwise fit`
        refitted to its outcomes; a fit to its probe answers' lengths (centred on its trained vector if it
        has one); its trained vector; one added with `lengths.add_fitted`."""
        lengths = self.lengths
        if lengths is None:
            return None
        if isinstance(model, str):
            return lengths.vector_for(model)
        refitted = lengths.outcome_vector(model.all_names())
        if refitted is not None:
            return refitted
        key = (snapshot.version, model.name) if snapshot is not None else None
        if key is None or key not in self._length_fits:
            observed = probe_lengths(model, snapshot)
            fitted = self.fit_probe_lengths(model, observed) if observed else None
            if key is None:
                return fitted or lengths.vector_for(model)
            with self._lock:
                if len(self._length_fits) > 4096:  # registry versions come and go: never grow without bound
                    self._length_fits.clear()
                self._length_fits[key] = fitted
        return self._length_fits[key] or lengths.vector_for(model)

    def fit_probe_lengths(self, model, observed: dict[str, int], u: np.ndarray | None = None,
                          tokens: np.ndarray | None = None, source: str = "probe"):
        """A length vector for `model` from its probe answers' lengths `observed` ({prompt_id: tokens}) and
        any further lengths `tokens` on prompts with vectors `u`: under the population prior of the probe
        prompts' tables, or centred on the model's trained vector (with `lengths.TRUST_TRAINED`)."""
        from pickwise.predictor.lengths import TRUST_TRAINED
        from pickwise.registry.probes.probe_set import probe_index

        ids, probe_u = self.probe_vectors(needed=set(observed))
        position = {pid: i for i, pid in enumerate(ids)}
        known = [pid for pid in observed if pid in position]
        index = probe_index()
        trained = self.lengths.trained_vector(model.all_names())
        extra_u = np.zeros((0, probe_u.shape[1])) if u is None else np.asarray(u, dtype=np.float64)
        extra = np.zeros(0) if tokens is None else np.asarray(tokens, dtype=np.float64)
        return self.lengths.fit(np.vstack([probe_u[[position[p] for p in known]], extra_u]),
                                np.concatenate([np.array([observed[p] for p in known], dtype=np.float64), extra]),
                                {index[p].table for p in known if p in index} or None, model.name,
                                center=trained, trust=TRUST_TRAINED if trained is not None else 1.0, source=source)

    def low_confidence(self, models: Sequence, snapshot=None) -> dict[str, str]:
        """{model name: reason} for models scored from a prior rather than from results."""
        out = {}
        for m in models:
            vec = self.model_vector(m, snapshot)
            if vec.low_confidence:
                out[vec.name] = vec.low_confidence
        return out

    # ---- model vectors ---------------------------------------------------------------------
    def trained_index(self, name: str) -> int | None:
        return self._index.get(name)

    def model_vector(self, model, snapshot=None) -> ModelVector:
        if isinstance(model, str):
            j = self._index.get(model)
            if j is None and model in self._outcome:
                return self._outcome[model]
            if j is None:
                raise KeyError(
                    f"model {model!r} is not in the predictor artifact ({len(self.model_names)} trained models); "
                    "pass its registry entry (with probe results) instead of its name"
                )
            return ModelVector(model, self._vectors[j], float(self._bias[j]), "trained", index=j,
                               outcomes=self._outcome_evidence.get(j))
        for name in model.all_names():
            j = self._index.get(name)
            if j is not None:
                return ModelVector(model.name, self._vectors[j], float(self._bias[j]), "trained", index=j,
                                   outcomes=self._outcome_evidence.get(j))
        scores = probe_results(model, snapshot)
        for name in model.all_names():
            fitted = self._outcome.get(name)
            if fitted is not None and scores:
                # `refit.fit_one` fitted it to its probe results and outcomes: it keeps the support (and
                # the place on the scale) its probe results gave it, and is not "fitted to only N outcomes"
                rows, ability = self.probe_evidence(scores)
                return ModelVector(model.name, fitted.vector, fitted.bias, "outcomes", task_rows=rows,
                                   ability=ability, outcomes=fitted.outcomes)
            if fitted is not None:
                return ModelVector(model.name, fitted.vector, fitted.bias, "outcomes", fitted.low_confidence,
                                   outcomes=fitted.outcomes)
        if scores:
            vector, bias = self.fit_probe(scores)
            rows, ability = self.probe_evidence(scores)
            return ModelVector(model.name, vector, bias, "probe", task_rows=rows, ability=ability)
        probe = model.probe
        if probe is not None and probe.similar_to:
            target = snapshot.get(probe.similar_to) if snapshot is not None else probe.similar_to
            base = self.model_vector(target, snapshot)
            # scored as its target is, placement on the joint scale included (with its vector alone, the
            # scale's blend lowered the target on unsupported prompts, not the model said to be like it)
            return replace(base, name=model.name, source="similar_to",
                           low_confidence=f"no probe results; scored like {probe.similar_to!r}")
        from pickwise.predictor.coldstart import population_prior

        vector, bias = population_prior(*self.trained_vectors)
        if probe is not None and probe.benchmark_score is not None:
            shifted = self.bias_for_mean(vector, probe.benchmark_score)
            return ModelVector(model.name, vector, shifted, "benchmark_score",
                               f"no probe results; prior from benchmark_score={probe.benchmark_score}",
                               ability=self.prior_ability(shifted - bias))
        return ModelVector(model.name, vector, bias, "population",
                           "no probe results or prior: scored as an average model", ability=self.prior_ability(0.0))

    def prior_ability(self, shift: float) -> float | None:
        """The place on the joint scale of the average trained model with its bias moved by `shift` (None
        without a one-scale layer): the trained models' mean ability, moved as its calibrated logit is."""
        if self.scale is None:
            return None
        return float(np.mean(self.scale.ability)) + shift / self.temperature

    def fit_probe(self, scores: dict[str, float]) -> tuple[np.ndarray, float]:
        """Vectors for a new model from its probe results; cached by the results' content."""
        key = hashlib.sha256(json.dumps(sorted(scores.items())).encode()).hexdigest()
        with self._lock:
            if key in self._fitted:
                return self._fitted[key]
        ids, u = self.probe_vectors(needed=set(scores))
        position = {pid: i for i, pid in enumerate(ids)}
        known = [pid for pid in scores if pid in position]
        if not known:
            raise ValueError("none of the probe results' prompt ids are in this artifact's probe set")
        rows = np.array([position[pid] for pid in known])
        targets = np.array([scores[pid] for pid in known], dtype=np.float64)
        from pickwise.registry.probes.probe_set import probe_index

        index = probe_index()
        fitted = self.fit_results(u[rows], targets, tables={index[pid].table for pid in known if pid in index})
        with self._lock:
            self._fitted[key] = fitted
        return fitted

    def probe_evidence(self, scores: dict[str, float]) -> tuple[np.ndarray | None, float | None]:
        """(results per scale task, ability on the joint scale) of a model's probe results; (None, None)
        without a one-scale layer. The probe set names each prompt's table and task."""
        if self.scale is None:
            return None, None
        from pickwise.registry.probes.probe_set import probe_index

        index = probe_index()
        known = [pid for pid in sorted(scores) if pid in index]
        tasks = [f"{index[pid].table}/{index[pid].task}" for pid in known]
        return self.scale.task_rows(tasks), self.scale.ability_from(tasks, np.array([scores[p] for p in known]))

    def fit_results(self, u: np.ndarray, scores: np.ndarray, tables: Iterable[str] | None = None) -> tuple[np.ndarray, float]:
        """(e, b) for a model with `scores` on prompts whose vectors are `u` and that come from `tables`.

        The prior is taken from the trained models measured on those tables (`reference_models`).
        """
        from pickwise.predictor.coldstart import fit_model_vector

        ref = self.reference_models(tables)
        return fit_model_vector(u, np.asarray(scores, dtype=np.float64), self._vectors[ref], self._bias[ref],
                                self.temperature)

    def reference_models(self, tables: Iterable[str] | None = None) -> np.ndarray:
        """Indices of the trained models with results on any of `tables`: the cold-start prior's population.

        Task directions are table-specific, so a model trained only on other benchmarks has
        untrained components along this benchmark's directions; pooling it into the prior blurs
        the prior's mean and covariance (on held-out MMLU-Pro models, a prior from the 21 MMLU-Pro
        models instead of all 44 raised cold-start capture from 0.028 to 0.046, mean of 8 random
        220-prompt probe sets). Every trained model when `tables` is None, when the artifact does
        not record its models' tables (artifacts written before this), or when fewer than
        MIN_REFERENCE_MODELS match.
        """
        everyone = np.arange(len(self.model_names))
        recorded = self.meta.get("model_tables")
        if tables is None or not recorded:
            return everyone
        wanted = set(tables)
        ref = np.array([j for j, m in enumerate(self.model_names) if wanted & set(recorded.get(m, ()))], dtype=int)
        return ref if len(ref) >= MIN_REFERENCE_MODELS else everyone

    def probe_vectors(self, needed: set[str] | None = None) -> tuple[list[str], np.ndarray]:
        """Prompt vectors of the probe set: stored in the artifact, else computed once now.

        If `needed` ids are missing (the shipped probe set was regenerated after training),
        the current probe set's prompts are encoded once and added, so results for new probe
        prompts still find their vectors.
        """
        with self._lock:
            if self._probe is None or (needed and not needed <= set(self._probe[0])):
                from pickwise.registry.probes.probe_set import load_probe_set

                have = set(self._probe[0]) if self._probe is not None else set()
                entries = [e for e in load_probe_set() if e.prompt_id not in have]
                if entries:
                    u, _ = self.prompt_vectors([e.prompt for e in entries])
                    ids = [e.prompt_id for e in entries]
                    if self._probe is not None:
                        ids, u = list(self._probe[0]) + ids, np.vstack([self._probe[1], u])
                    self._probe = (ids, u)
            return self._probe[0], np.asarray(self._probe[1], dtype=np.float64)

    def bias_for_mean(self, vector: np.ndarray, mean_quality: float) -> float:
        """The bias that makes the model's mean predicted quality over the probe prompts equal `mean_quality`."""
        from scipy.optimize import brentq

        _, u = self.probe_vectors()
        z = u @ vector
        target = float(np.clip(mean_quality, 1e-3, 1 - 1e-3))
        return brentq(lambda b: np.mean(1 / (1 + np.exp(-(z + b) / self.temperature))) - target, -50, 50)

    # ---- splits ---------------------------------------------------------------------------
    def row_split(self, table: RoutingTable) -> np.ndarray:
        """'train' / 'val' / 'test' per row: rows the artifact trained or validated on, and the rest.

        Tables the artifact never saw use the recorded split rule, so a question that reached
        training through another table (the same MMLU item in two tables) is still not scored.
        """
        if self._splits is None:  # read once: eval and benches ask per table
            self._splits = read_splits(self.directory)
        recorded = self._splits.get(table.name)
        if recorded is None:
            rule = self.meta["split_rule"]
            return split_labels(table.prompts, seed=rule["seed"], val_frac=rule["val_frac"], test_frac=rule["test_frac"])
        train, val = set(recorded["train"]), set(recorded["val"])
        return np.array(["train" if p in train else "val" if p in val else "test" for p in table.prompt_ids], dtype=object)


def unreadable_reason(unknown: float) -> str:
    """Why every quality of a prompt the encoder cannot read is low-confidence, in words."""
    return (f"unreadable prompt: {unknown:.0%} of the tokens the encoder reads are unknown to it (emoji, or a "
            "script outside its vocabulary), so its quality is a guess: the model's general ability")


def probe_results(model, snapshot=None) -> dict[str, float] | None:
    """{probe prompt id: score} of a registry model: from the snapshot's files, or given inline."""
    scores = snapshot.probe_scores(model.name) if snapshot is not None else None
    if scores is None and model.probe is not None and isinstance(model.probe.results, list):
        scores = {r.prompt_id: r.score for r in model.probe.results if r.score is not None}
    return scores


def probe_lengths(model, snapshot=None) -> dict[str, int] | None:
    """{probe prompt id: output tokens} of a registry model's probe answers: from the snapshot's files, or inline."""
    lengths = snapshot.probe_lengths(model.name) if snapshot is not None else None
    if lengths is None and model.probe is not None and isinstance(model.probe.results, list):
        lengths = {r.prompt_id: r.output_tokens for r in model.probe.results if r.output_tokens is not None}
    return lengths or None


def refresh_probe_vectors(artifact_dir: str | Path) -> int:
    """Recompute and store an artifact's probe-prompt vectors for the current shipped probe set.

    Run after regenerating the probe set, so registering a model by its probe results stays
    a millisecond fit instead of first encoding the whole probe set.
    """
    from pickwise.predictor.artifact import write_probe_vectors
    from pickwise.registry.probes.probe_set import load_probe_set

    predictor = load_predictor(artifact_dir, "cpu")
    entries = load_probe_set()
    u, _ = predictor.prompt_vectors([e.prompt for e in entries])
    write_probe_vectors(artifact_dir, [e.prompt_id for e in entries], u)
    return len(entries)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 matmuls in hardware (AVX512-BF16 or AMX flags; Linux only).

    Elsewhere oneDNN emulates bf16 and autocast would be slower than fp32, so "auto" keeps fp32.
    """
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def default_device(precision: str) -> str:
    """CUDA when present, except for the quantised precisions, which have CPU kernels only."""
    return "cuda" if torch.cuda.is_available() and precision not in CPU_ONLY_PRECISIONS else "cpu"


def torch_precision(device: str) -> str:
    """The fastest encoder torch runs alone on `device`: bf16 on a CPU with native bf16, else fp32."""
    return "bf16" if device == "cpu" and cpu_has_native_bf16() else "fp32"


def resolve_precision(precision: str, device: str) -> str:
    """"auto" made concrete for `device`: onnx-int8 on a CPU, fp32 on CUDA.

    On a CPU the int8 ONNX encoder is the fastest at every batch size and routes as well as fp32 on
    every priced table (docs/decisions/precision.md).
    If its export fails, `load_predictor` falls back to `torch_precision`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "onnx-int8" if device == "cpu" else "fp32"
    return precision


def load_predictor(
    artifact_dir: str | Path | None = None,
    device: str | None = None,
    backbone=None,
    tokenizer=None,
    *,
    merge: bool = True,
    precision: str = "fp32",
) -> QualityPredictor:
    """Load an artifact (default: the promoted one, `pickwise artifact promote`, else the shipped one)
    on the real MiniLM backbone.

    `merge` folds LoRA into the weights (no adapter matmuls at inference). `precision` trades a
    little accuracy for speed (figures: docs/performance.md): "bf16" runs the encoder
    under bfloat16 autocast (fast where the CPU has bf16 instructions, e.g. AVX512-BF16/AMX;
    slower than fp32 where it does not), "int8" quantises every encoder Linear dynamically (CPU only),
    "onnx-int8" runs the encoder as an int8 ONNX Runtime graph (CPU only; `predictor.onnx_encoder`,
    exported on first use and cached, with as many threads as torch has), "auto" is onnx-int8 on a
    CPU (bf16 or fp32, with a logged warning, if the export fails) and fp32 on CUDA.
    """
    if artifact_dir:
        directory = Path(artifact_dir)
    else:
        from pickwise.predictor.promotion import serving_artifact_dir

        directory = serving_artifact_dir()
    dev = device or default_device(precision)
    requested, precision = precision, resolve_precision(precision, dev)
    if precision in CPU_ONLY_PRECISIONS and dev != "cpu":
        raise ValueError(f"precision {precision} runs the encoder on the CPU only, not on {dev}")
    backbone = backbone if backbone is not None else load_backbone()
    model, meta = load_model(directory, backbone, merge=merge)
    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        model.encoder = quantize_dynamic(model.encoder, {torch.nn.Linear}, dtype=torch.qint8)
    prompt_encoder = None
    if precision == "onnx-int8":
        from pickwise.predictor.onnx_encoder import int8_prompt_encoder

        try:
            prompt_encoder = int8_prompt_encoder(model, threads=torch.get_num_threads())
        except Exception as exc:  # asked for by name, it must fail loudly; chosen by "auto", it may not stop a service
            if requested != "auto":
                raise
            precision = torch_precision(dev)
            log.warning("the int8 ONNX encoder is unavailable (%s: %s); running the encoder in %s instead",
                        type(exc).__name__, exc, precision)
        else:  # the graph holds the encoder now: drop torch's copy of its weights
            model.encoder = None
    model.to(dev)
    return QualityPredictor(model, tokenizer or load_tokenizer(), meta, directory, dev, precision, prompt_encoder)
