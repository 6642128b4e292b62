"""QualityPredictor: calibrated P(model answers well) for prompts x registered models.

A registered model is scored through a model vector (e, b):
- trained-in models (by name or alias) use the vectors learned in training;
- a new model with probe results gets vectors fitted to those results (`predictor.coldstart`),
  cached by the content of its results, so registering it needs no retraining;
- a model with only a prior (`similar_to`, `benchmark_score`) or nothing at all gets a prior
  vector and is reported as low-confidence.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pickwise.predictor import CPU_ONLY_PRECISIONS, PRECISIONS
from pickwise.predictor.artifact import (
    artifact_version,
    default_artifact_dir,
    load_model,
    read_probe_vectors,
    read_splits,
)
from pickwise.predictor.backbone import encode_texts, length_buckets, load_backbone, load_tokenizer, pad_batch
from pickwise.predictor.data import RoutingTable, split_labels

log = logging.getLogger("pickwise.predictor")
MIN_REFERENCE_MODELS = 5  # fewer same-table models than this: the cold-start prior uses every trained model
MAX_PROMPT_CHARS = 200_000  # longer input is cut before tokenising (the model reads 128 tokens anyway)


@torch.no_grad()
def encode_prompt_vectors(
    model,
    tokenizer,
    prompts: Sequence[str],
    device="cpu",
    max_len: int = 128,
    head_frac: float = 0.4,
    batch_size: int = 64,
    progress: bool = False,
    prompt_encoder=None,
) -> tuple[np.ndarray, list[bool]]:
    """Prompt vectors u [N, dim] and which prompts were cut to `max_len` tokens.

    Batched in length buckets, so short prompts are not padded to the longest one.
    `prompt_encoder(input_ids, mask) -> u` replaces the torch model when given (the ONNX Runtime
    int8 graph of `predictor.onnx_encoder`).
    """
    if model.training:  # eval() walks every module (~0.3 ms, 2% of a lone select): only when needed
        model.eval()
    texts = [p[:MAX_PROMPT_CHARS] for p in prompts]
    encoded = encode_texts(tokenizer, texts, max_len, head_frac)
    out = np.zeros((len(texts), model.config.dim), dtype=np.float32)
    buckets = length_buckets([len(x) for x in encoded.ids], batch_size)
    for batch in tqdm(buckets, desc="predicting", disable=not progress, leave=False, unit="batch"):
        input_ids, mask = pad_batch([encoded.ids[i] for i in batch])
        if prompt_encoder is not None:
            out[batch] = prompt_encoder(input_ids, mask)
            continue
        input_ids, mask = input_ids.to(device), mask.to(device)
        pooled = model.top(model.stem(input_ids, mask), mask)
        out[batch] = model.prompt_vectors(pooled).float().cpu().numpy()
    return out, encoded.truncated


@dataclass(frozen=True)
class ModelVector:
    """How one registered model is scored: its vector, bias, and why it is low-confidence (if it is)."""

    name: str
    vector: np.ndarray
    bias: float
    source: str  # "trained" | "probe" | "similar_to" | "benchmark_score" | "population"
    low_confidence: str | None = None


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
        self._fitted: dict[str, tuple[np.ndarray, float]] = {}
        self._splits: dict | None = None
        self._lock = threading.Lock()
        from pickwise.predictor.lengths import load_length_model

        self.lengths = load_length_model(directory)  # None: every model's output length is its registry prior

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
        cfg = self.model.config
        encoder = self.prompt_encoder
        if single_thread and encoder is not None:
            encoder = functools.partial(encoder, single_thread=True)
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return encode_prompt_vectors(
                self.model, self.tokenizer, prompts, self.device, cfg.max_len, cfg.head_frac, batch_size, progress,
                encoder,
            )

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
        vectors = [self.model_vector(m, snapshot) for m in models]
        if not prompts:
            return np.zeros((0, len(vectors))), []
        u, truncated = self.prompt_vectors(prompts, progress=progress, batch_size=batch_size)
        return self.probabilities(u.astype(np.float64), vectors), truncated

    def probabilities(self, u: np.ndarray, vectors: Sequence[ModelVector]) -> np.ndarray:
        """sigmoid((u . e + b) / T) for precomputed prompt vectors."""
        if not vectors:
            return np.zeros((len(u), 0))
        e = np.stack([v.vector for v in vectors])
        b = np.array([v.bias for v in vectors])
        return 1.0 / (1.0 + np.exp(-(u @ e.T + b) / self.temperature))

    def output_tokens(self, u: np.ndarray, models: Sequence) -> tuple[np.ndarray, list[str]]:
        """Expected output tokens [N, M] (cl100k_base) for prompt vectors u and models (names or ModelSpecs),
        and per model its source: "trained" | "fitted" | "registry" (`predictor.lengths`)."""
        from pickwise.predictor.lengths import predict_output_tokens

        return predict_output_tokens(self.lengths, u, models)

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
            if j is None:
                raise KeyError(
                    f"model {model!r} is not in the predictor artifact ({len(self.model_names)} trained models); "
                    "pass its registry entry (with probe results) instead of its name"
                )
            return ModelVector(model, self._vectors[j], float(self._bias[j]), "trained")
        for name in model.all_names():
            j = self._index.get(name)
            if j is not None:
                return ModelVector(model.name, self._vectors[j], float(self._bias[j]), "trained")
        scores = snapshot.probe_scores(model.name) if snapshot is not None else None
        if scores is None and model.probe is not None and isinstance(model.probe.results, list):
            scores = {r.prompt_id: r.score for r in model.probe.results}
        if scores:
            vector, bias = self.fit_probe(scores)
            return ModelVector(model.name, vector, bias, "probe")
        probe = model.probe
        if probe is not None and probe.similar_to:
            target = snapshot.get(probe.similar_to) if snapshot is not None else probe.similar_to
            base = self.model_vector(target, snapshot)
            return ModelVector(model.name, base.vector, base.bias, "similar_to",
                               f"no probe results; scored like {probe.similar_to!r}")
        from pickwise.predictor.coldstart import population_prior

        vector, bias = population_prior(self._vectors, self._bias)
        if probe is not None and probe.benchmark_score is not None:
            bias = self.bias_for_mean(vector, probe.benchmark_score)
            return ModelVector(model.name, vector, bias, "benchmark_score",
                               f"no probe results; prior from benchmark_score={probe.benchmark_score}")
        return ModelVector(model.name, vector, bias, "population",
                           "no probe results or prior: scored as an average model")

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

    On a CPU the int8 ONNX encoder is the fastest at every batch size (bench/bench_predictor.py:
    ~2x bf16 at batch 1) and routes as well as fp32 on the validation and the test rows of every
    priced table (bench/results/onnx_int8_{val,test}.md: capture within 0.01, Brier within 0.001).
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
    """Load an artifact (default: the shipped one) on the real MiniLM backbone.

    `merge` folds LoRA into the weights (no adapter matmuls at inference). `precision` trades a
    little accuracy for speed (see bench/bench_predictor.py for both): "bf16" runs the encoder
    under bfloat16 autocast (fast where the CPU has bf16 instructions, e.g. AVX512-BF16/AMX;
    slower than fp32 where it does not), "int8" quantises every encoder Linear dynamically (CPU only),
    "onnx-int8" runs the encoder as an int8 ONNX Runtime graph (CPU only; `predictor.onnx_encoder`,
    exported on first use and cached, with as many threads as torch has), "auto" is onnx-int8 on a
    CPU (bf16 or fp32, with a logged warning, if the export fails) and fp32 on CUDA.
    """
    directory = Path(artifact_dir) if artifact_dir else default_artifact_dir()
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
        else:  # the graph holds the encoder now: torch's copy of its weights is ~96 MB of a ~720 MB service
            model.encoder = None
    model.to(dev)
    return QualityPredictor(model, tokenizer or load_tokenizer(), meta, directory, dev, precision, prompt_encoder)
