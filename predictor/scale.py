"""One scale for every trained model, and the evidence behind each (prompt, model) prediction.

The trained logit u·e_m + b_m only knows model m through the table(s) it has results in: b_m
carries those tables' difficulty, and on a prompt of another kind the score is extrapolation.
Here ability and difficulty are fitted jointly over all tables (a Rasch layer, logit = a_m − d_k
per task k), so tables are linked through the models they share, and a dominance the data shows
(A ≥ 0.08 better than B wherever both were measured) is kept as a constraint a_A > a_B.

At serving time, for a prompt with task posterior P and open-endedness p_open (a logistic
detector on [u, P, pooled embedding, s_nn], trained on AlpacaEval instructions against priced
prompts; s_nn is the mean cosine similarity of the pooled embedding to its k nearest prompts of a
bank of priced training prompts, so a prompt close to a priced table's reads as that table's kind):
- support s_m = (1 − cut) · min(1, Σ_k P_k w_mk / tau), w_mk = n_mk / (n_mk + n0), n_mk the
  model's training rows on task k, cut = clip((p_open − gate) / (1 − gate), 0, 1): how much of
  the prompt reads as tasks the model was measured on;
- the prompt's difficulty d is read off the trained models that *are* supported (d̂ = support-
  weighted mean of a_m − trained logit), shrunk towards the task posterior's difficulty when few are;
- logit = [s · trained logit + (1 − s) · (a_m − d − base penalty · p_open)] / temperature.
So an unsupported model is placed relative to the supported ones on this very prompt, in the order
of the joint scale, and flagged. Everything here is numpy on arrays the encoder pass already gives.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCALE_FILE = "scale.json"
BANK_FILE = "scale_bank.npy"  # the detector's bank: [B, width] unit-norm pooled embeddings, float16
LOW_SUPPORT = 0.5  # support below this: the prediction is flagged low-confidence
OPEN_TASK = "open-ended"
OPEN_ENDED_AT = 0.5  # p_open from which a prompt counts as open-ended (reasons, the base-model pool rule)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


# ----------------------------------------------------------------------------- orderings in the data
def dominance_pairs(tables, min_gap: float = 0.08, min_task_rows: int = 30, min_rows: int = 30):
    """(direct, implied) sets of (a, b): a dominates b.

    `tables`: iterable of (quality [N, M] on one shared model index, NaN = no result; task [N]).
    Direct: on every table both have >= `min_rows` joint results in, a's mean exceeds b's by
    `min_gap` and a is not worse on any task with >= `min_task_rows` joint rows. Implied: the
    transitive closure's extra pairs among models that share no table (where they do, the direct
    test already decided).
    """
    holds: dict[tuple[int, int], bool] = {}
    shared: set[tuple[int, int]] = set()
    n_models = None
    for quality, task in tables:
        quality = np.asarray(quality, dtype=np.float64)
        task = np.asarray(task)
        n_models = quality.shape[1]
        obs = ~np.isnan(quality)
        present = np.flatnonzero(obs.sum(0) >= min_rows)
        for a in present:
            for b in present:
                if a == b:
                    continue
                both = obs[:, a] & obs[:, b]
                if both.sum() < min_rows:
                    continue
                shared.add((int(a), int(b)))
                ok = quality[both, a].mean() - quality[both, b].mean() >= min_gap
                if ok:
                    for t in np.unique(task[both]):
                        rows = both & (task == t)
                        if rows.sum() >= min_task_rows and quality[rows, a].mean() < quality[rows, b].mean():
                            ok = False
                            break
                holds[(int(a), int(b))] = holds.get((int(a), int(b)), True) and ok
    direct = {p for p, ok in holds.items() if ok}
    if n_models is None:
        return set(), set()
    reach = np.zeros((n_models, n_models), bool)
    for a, b in direct:
        reach[a, b] = True
    for k in range(n_models):  # Warshall
        reach |= reach[:, [k]] & reach[[k], :]
    implied = {(int(a), int(b)) for a, b in zip(*np.nonzero(reach))
               if a != b and (a, b) not in shared and (b, a) not in shared}
    return direct, implied


# ----------------------------------------------------------------------------- the joint Rasch fit
def fit_rasch(n: np.ndarray, y: np.ndarray, pairs=(), *, free_slope=None, l2: float = 0.01,
              margin: float = 0.1, penalty: float = 100.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Abilities a [M], difficulties d [K], slopes [K] maximising the binomial likelihood of
    y_mk successes (fractional allowed) out of n_mk, logit = slope_k (a_m − d_k).

    Slopes are 1 except where `free_slope` [K] is True (a table whose score is not an accuracy,
    e.g. a win rate). `pairs` (a, b) are kept as a_a ≥ a_b + margin by a squared hinge penalty.
    """
    from scipy.optimize import minimize

    n, y = np.asarray(n, float), np.asarray(y, float)
    m_count, k_count = n.shape
    free = np.zeros(k_count, bool) if free_slope is None else np.asarray(free_slope, bool)
    pairs = np.array(sorted(pairs), dtype=int).reshape(-1, 2)

    def unpack(theta):
        a, d = theta[:m_count], theta[m_count:m_count + k_count]
        slope = np.ones(k_count)
        slope[free] = np.exp(theta[m_count + k_count:])
        return a, d, slope

    def objective(theta):
        a, d, slope = unpack(theta)
        diff = a[:, None] - d[None, :]
        z = slope[None, :] * diff
        p = sigmoid(z)
        nll = np.sum(n * np.logaddexp(0.0, z) - y * z)
        g_z = n * p - y
        g_a = (g_z * slope[None, :]).sum(1) + 2 * l2 * a
        g_d = -(g_z * slope[None, :]).sum(0) + 2 * l2 * d
        g_slope = (g_z * diff).sum(0) * slope  # d/d log slope
        loss = nll + l2 * (a @ a + d @ d)
        if len(pairs):
            gap = np.maximum(0.0, a[pairs[:, 1]] + margin - a[pairs[:, 0]])
            loss += penalty * np.sum(gap ** 2)
            np.add.at(g_a, pairs[:, 1], 2 * penalty * gap)
            np.add.at(g_a, pairs[:, 0], -2 * penalty * gap)
        return loss, np.concatenate([g_a, g_d, g_slope[free]])

    theta0 = np.zeros(m_count + k_count + int(free.sum()))
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 5000})
    return unpack(result.x)


# ----------------------------------------------------------------------------- nearest-prompt similarity
def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def stored_bank(x: np.ndarray) -> np.ndarray:
    """Unit-norm rows rounded to float16, as the artifact stores them (fit on what serving reads)."""
    return unit_rows(x).astype(np.float16).astype(np.float32)


def nearest_similarity(x: np.ndarray, bank: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """s_nn [N]: mean cosine similarity of each row of `x` to its `k` nearest rows of the unit-norm
    `bank`; in chunks, so a large batch never holds an [N, B] matrix at once."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != bank.shape[1]:
        raise ValueError(f"embeddings of shape {x.shape} do not match the density bank's width {bank.shape[1]}")
    k = min(k, len(bank))
    out = np.empty(len(x))
    for start in range(0, len(x), chunk):
        sims = unit_rows(x[start:start + chunk]) @ bank.T
        out[start:start + chunk] = np.partition(sims, -k, axis=1)[:, -k:].mean(1)
    return out


# ----------------------------------------------------------------------------- serving-time layer
@dataclass
class OneScale:
    """Fitted parameters of the layer; `combine` is all that runs per prompt.

    Arrays are indexed by `model_names` (the artifact's trained models, same order) and `tasks`
    (the artifact's task list).
    """

    model_names: list[str]
    tasks: list[str]
    ability: np.ndarray  # [M] a_m on the joint scale (calibrated-logit units)
    difficulty: np.ndarray  # [K] d_k
    rows: np.ndarray  # [M, K] training rows of model m on task k
    model_tables: dict[str, list[str]]
    open_difficulty: float  # d for an open-ended prompt (no priced table measures it)
    base: np.ndarray  # [M] bool: a base (not instruction-tuned) model
    base_penalty: float = 0.0  # logit subtracted for base models on open-ended prompts
    detector: dict = field(default_factory=dict)  # mean, std, w, b (+ k with a bank): p(open-ended | [u, P, ...])
    n0: float = 20.0
    tau: float = 1.0
    kappa: float = 2.0  # prior weight (in supported models) of the task difficulty against d̂
    set_rho: float = 0.0  # common-mode share of failures in `set_quality`
    open_gate: float = 0.0  # p_open below this does not cut support (the detector's false positives sit there)
    temperature: float = 1.0  # divides the blended logits (fitted on validation rows)
    info: dict = field(default_factory=dict)
    # the detector's bank ([B, width] unit-norm pooled embeddings of priced training prompts): its
    # last feature is s_nn against it; None for a detector without that feature (older scale.json)
    bank: np.ndarray | None = None

    # ---- persistence
    def to_dict(self) -> dict:
        out = {}
        for key, value in self.__dict__.items():
            if key != "bank":  # stored beside, as float16 (BANK_FILE)
                out[key] = value.tolist() if isinstance(value, np.ndarray) else value
        out["detector"] = {k: (np.asarray(v).tolist()) for k, v in self.detector.items()}
        return out

    def save(self, directory: str | Path) -> Path:
        """Write scale.json, and the bank beside it (or remove a stale one, so it never pairs with
        a scale it was not fitted with)."""
        directory = Path(directory)
        bank = directory / BANK_FILE
        if self.bank is not None:
            with open(bank.with_name(".tmp-" + BANK_FILE), "wb") as handle:
                np.save(handle, self.bank.astype(np.float16), allow_pickle=False)
            bank.with_name(".tmp-" + BANK_FILE).replace(bank)
        elif bank.exists():
            bank.unlink()
        path = directory / SCALE_FILE
        tmp = path.with_name(".tmp-" + SCALE_FILE)
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: dict, bank: np.ndarray | None = None) -> OneScale:
        data = dict(data)
        for key in ("ability", "difficulty", "rows"):
            data[key] = np.asarray(data[key], dtype=np.float64)
        data["base"] = np.asarray(data["base"], dtype=bool)
        data["detector"] = {k: np.asarray(v, dtype=np.float64) for k, v in data.get("detector", {}).items()}
        if ("k" in data["detector"]) != (bank is not None):
            raise ValueError("a detector with an s_nn feature (k) needs its bank, and only such a detector has one")
        return cls(**data, bank=bank)

    @classmethod
    def load(cls, directory: str | Path) -> OneScale | None:
        path = Path(directory) / SCALE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        bank = None
        if "k" in data.get("detector", {}):
            bank_path = path.with_name(BANK_FILE)
            if not bank_path.exists():
                raise ValueError(f"{path}: its open-ended detector reads s_nn, but {BANK_FILE} is missing beside it")
            bank = np.load(bank_path, allow_pickle=False).astype(np.float32)
            if bank.ndim != 2:
                raise ValueError(f"{bank_path}: expected a [prompts, width] bank, got shape {bank.shape}")
        return cls.from_dict(data, bank)

    # ---- per prompt
    def open_ended(self, u: np.ndarray, tasks: np.ndarray, pooled: np.ndarray | None = None) -> np.ndarray:
        """p(open-ended: of no priced table's kind) [N] from u, the task posterior, the pooled
        embedding and (with a bank) its similarity to the nearest priced training prompts."""
        if not self.detector:
            return np.zeros(len(u))
        return sigmoid(self.detector_features(u, tasks, pooled) @ self.detector["w"] + float(self.detector["b"]))

    def detector_features(self, u: np.ndarray, tasks: np.ndarray, pooled: np.ndarray | None = None) -> np.ndarray:
        """The detector's standardised input [N, F]: [u, P] (+ pooled) (+ s_nn with a bank)."""
        extra = 1 if self.bank is not None else 0
        parts = [u, tasks]
        if len(self.detector["mean"]) - extra > u.shape[1] + tasks.shape[1]:
            if pooled is None:
                raise ValueError("this scale's open-ended detector reads the pooled embedding: pass prompt_features().pooled")
            parts.append(pooled)
        if extra:
            parts.append(nearest_similarity(pooled, self.bank, int(self.detector["k"]))[:, None])
        return (np.hstack(parts) - self.detector["mean"]) / self.detector["std"]

    def support(self, tasks: np.ndarray, p_open: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        """[N, M] in [0, 1]: the share of the prompt that reads as tasks the model has results on.
        `weight` [M', K] in [0, 1]: how far other models' results cover each task (`table_cover`),
        instead of the trained models' rows / (rows + n0)."""
        weight = self.rows / (self.rows + self.n0) if weight is None else np.atleast_2d(weight)
        raw = tasks @ weight.T
        return (1.0 - self.open_cut(p_open))[:, None] * np.clip(raw / self.tau, 0.0, 1.0)

    def open_cut(self, p_open: np.ndarray) -> np.ndarray:
        """[N] how much of each prompt is open-ended for support: 0 below the gate, 1 at p_open 1."""
        return np.clip((np.asarray(p_open, dtype=np.float64) - self.open_gate) / (1.0 - self.open_gate), 0.0, 1.0)

    def rows_weight(self, rows: np.ndarray) -> np.ndarray:
        """Results per task (or open-ended results) -> how far they support a prediction: n / (n + n0)."""
        rows = np.asarray(rows, dtype=np.float64)
        return rows / (rows + self.n0)

    def combine(self, trained_logits: np.ndarray, tasks: np.ndarray, u: np.ndarray,
                pooled: np.ndarray | None = None) -> dict:
        """Blend calibrated trained logits [N, M] with the scale. Returns logits and evidence arrays."""
        tasks = np.asarray(tasks, dtype=np.float64)
        p_open = self.open_ended(u, tasks, pooled)
        s = self.support(tasks, p_open)
        task_d = (1.0 - p_open) * (tasks @ self.difficulty) + p_open * self.open_difficulty
        weight = s.sum(1)
        anchored = (s * (self.ability[None, :] - trained_logits)).sum(1) / np.maximum(weight, 1e-9)
        d = (weight * anchored + self.kappa * task_d) / (weight + self.kappa)
        scale = self.ability[None, :] - d[:, None] - self.base_penalty * self.base[None, :] * p_open[:, None]
        logits = (s * trained_logits + (1.0 - s) * scale) / self.temperature
        return {"logits": logits, "support": s, "scale_logits": scale, "open_ended": p_open,
                "rows": tasks @ self.rows.T * (1.0 - p_open)[:, None], "difficulty": d}

    def task_rows(self, tasks: Iterable[str]) -> np.ndarray:
        """[K] how many of `tasks` ("table/task" per result) fall on each of the scale's tasks."""
        index = {t: k for k, t in enumerate(self.tasks)}
        rows = np.zeros(len(self.tasks))
        for task in tasks:
            if task in index:
                rows[index[task]] += 1
        return rows

    def ability_from(self, tasks: Sequence[str], scores: np.ndarray, l2: float = 0.01) -> float:
        """A model's ability on the joint scale from its scores on prompts of `tasks` (one "table/task"
        each): the maximum a posteriori a of sigmoid(a - d_task), d the scale's fitted difficulties,
        with the same small ridge as the joint fit (a few Newton steps on one number)."""
        index = {t: k for k, t in enumerate(self.tasks)}
        known = [i for i, t in enumerate(tasks) if t in index]
        if not known:
            return float(np.median(self.ability))
        d = self.difficulty[[index[tasks[i]] for i in known]]
        return ability_at(d, np.asarray(scores, dtype=np.float64)[known], start=float(np.median(self.ability)),
                          l2=l2)

    def covered(self, rows: np.ndarray) -> set[str]:
        """The tables whose tasks hold any of `rows` [K] (results per scale task)."""
        return {task.split("/", 1)[0] for task, n in zip(self.tasks, rows) if n > 0}

    def table_cover(self, rows: np.ndarray) -> np.ndarray:
        """[K] 1.0 on every task of a table where `rows` [K] has any result: a probe result set samples
        its tables' tasks by design, and the cold-start fit pools it with those tables' trained models,
        so its vector is the model's estimate across them, not only on the tasks it drew."""
        covered = self.covered(rows)
        return np.array([float(task.split("/", 1)[0] in covered) for task in self.tasks])

    def probe_reason(self, name: str, support: float, p_open: float, top_task: str, rows: np.ndarray) -> str:
        """Why a probe-registered model's prediction is low-confidence, in words (`reason`'s kind), from
        its probe results per scale task `rows`."""
        head = _unsupported(f"tasks {name}'s probe results cover", support, p_open, top_task)
        return head + (f"; placed on the joint ability scale from its {int(rows.sum())} probe results on "
                       f"{_tables_text(sorted(self.covered(rows)))}")

    def outcome_reason(self, name: str, support: float, p_open: float, top_task: str, outcomes,
                       index: int | None = None, probe_rows: np.ndarray | None = None) -> str:
        """Why a prediction of a model with outcomes (`pickwise fit`, `OutcomeEvidence` `outcomes`) is
        low-confidence, in words; `index` its row if trained, `probe_rows` its probe results per task."""
        if index is not None:
            results = f"its results on {_tables_text(self.model_tables.get(self.model_names[index], []))} and "
        elif probe_rows is not None:
            results = f"its {int(probe_rows.sum())} probe results on {_tables_text(sorted(self.covered(probe_rows)))} and "
        else:
            results = ""
        head = _unsupported(f"tasks {name}'s {'results and ' if results else ''}outcomes cover", support, p_open,
                            top_task)
        n = float(outcomes.task_rows.sum() + outcomes.open_rows)
        return head + (f"; placed on the joint ability scale from {results}its {n:.0f} outcomes "
                       f"({outcomes.open_rows:.0f} on open-ended prompts)")

    def reason(self, j: int, support: float, p_open: float, top_task: str) -> str:
        """Why prediction (·, model j) is low-confidence, in words."""
        name = self.model_names[j]
        head = _unsupported(f"tasks {name} has results on", support, p_open, top_task)
        tail = f"; placed on the joint ability scale from its results on {_tables_text(self.model_tables.get(name, []))}"
        if self.base[j] and p_open >= OPEN_ENDED_AT and self.base_penalty > 0:
            tail += "; base model (not instruction-tuned), rated lower on open-ended prompts"
        return head + tail


def ability_at(d: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None, *, start: float = 0.0,
               centre: float = 0.0, l2: float = 0.01) -> float:
    """The maximum a posteriori a of sigmoid(a - d_i) for scores in [0, 1] on prompts of difficulty d_i
    (each counted by `weights`), under a ridge l2 (a - centre)^2 / 2: Newton steps on one number."""
    y = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    a = start
    for _ in range(50):
        p = sigmoid(a - d)
        step = (np.sum(w * (y - p)) - l2 * (a - centre)) / (np.sum(w * p * (1.0 - p)) + l2)
        a += float(np.clip(step, -2.0, 2.0))
        if abs(step) < 1e-8:
            break
    return a


def _unsupported(evidence: str, support: float, p_open: float, top_task: str) -> str:
    """A low-confidence reason's head: an open-ended prompt, or how little of it reads as `evidence`."""
    if p_open >= OPEN_ENDED_AT:
        return f"open-ended prompt (p={p_open:.2f}): no priced table measures this kind"
    return f"only {support:.0%} of this prompt reads as {evidence} (nearest task: {top_task})"


def _tables_text(tables) -> str:
    """Tables by their short names ('mmlu_pro_25models' -> 'mmlu_pro'), in the order given, or 'no table'."""
    return ", ".join(re.sub(r"_\d+models$", "", t) for t in tables) or "no table"


# ----------------------------------------------------------------------------- sets of models
def set_quality(p: np.ndarray, rho: float = 0.0, axis: int = -1) -> np.ndarray:
    """P(at least one model of a set answers well) from the members' probabilities `p`.

    Independent errors give 1 − Π(1 − p); errors are positively correlated (a hard prompt fails
    many models), so a share `rho` of failures is taken as common-mode (all fail together
    whenever the most reliable one does): P(all fail) = rho · min(1 − p) + (1 − rho) · Π(1 − p).
    For two models of equal p, rho is the correlation of their failure indicators.
    Pure numpy; the fitted rho is `QualityPredictor.set_rho`.
    """
    q = 1.0 - np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    fail = rho * q.min(axis=axis) + (1.0 - rho) * q.prod(axis=axis)
    return 1.0 - fail


def fit_set_rho(p_sets: list[np.ndarray], outcomes: list[np.ndarray], grid: int = 101) -> float:
    """The rho minimising the Brier score of `set_quality` on sets with known outcomes.

    `p_sets[i]` [n_i, k_i] member probabilities, `outcomes[i]` [n_i] 1 if any member succeeded.
    """
    best, best_rho = np.inf, 0.0
    for rho in np.linspace(0.0, 1.0, grid):
        err = sum(np.sum((set_quality(p, rho) - o) ** 2) for p, o in zip(p_sets, outcomes))
        if err < best:
            best, best_rho = err, float(rho)
    return best_rho


# ----------------------------------------------------------------------------- fitting
# Base (pretrained-only) checkpoints among the trained models and the AlpacaEval columns; the
# rest are instruction/chat-tuned. The registry generator tags the same ones `base-model`.
BASE_MODELS = frozenset({
    "Llama-2-7b-hf", "Llama-2-13b-hf", "Llama-2-70b-hf", "Meta-Llama-3-70B", "Meta-Llama-3_1-70B",
    "Meta-Llama-3_1-8B", "Mistral-7B-v0.2-hf", "Mixtral-8x7B-v0.1", "Qwen1.5-110B", "Yi-34B", "Yi-6B",
    "codegemma-7b", "gemma-7b", "itpossible/Chinese-Mistral-7B-v0.1", "meta-llama/Meta-Llama-3-8B",
    "mistralai/Mistral-7B-v0.1", "phi-2",
})
# AlpacaEval column -> trained model (same checkpoint or the same API model); others stay unlinked
ALPACA_LINKS = {
    "gpt4_1106_preview": "gpt-4-1106-preview",
    "gpt-3.5-turbo-1106": "gpt-3.5-turbo-1106",
    "claude-2": "claude-v2",
    "claude": "claude-v1",
    "claude-instant-1.2": "claude-instant-v1",
}
BASE_PAIRS = (("phi-2", "phi-2-sft"),)  # (base, its instruction-tuned version) both in AlpacaEval


def task_counts(labels: np.ndarray, task: np.ndarray, tasks: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n [M, K] rows with a result, y [M, K] summed quality) per model and task."""
    index = {t: k for k, t in enumerate(tasks)}
    n = np.zeros((labels.shape[1], len(tasks)))
    y = np.zeros_like(n)
    obs = ~np.isnan(labels)
    for t in np.unique(task):
        rows = task == t
        k = index[t]
        n[:, k] = obs[rows].sum(0)
        y[:, k] = np.nansum(labels[rows], axis=0)
    return n, y


def fit_detector(pos: np.ndarray, neg: np.ndarray, c: float = 1.0, neg_groups: np.ndarray | None = None) -> dict:
    """Logistic regression p(open-ended | features): positives are open-ended prompts.

    Classes weigh the same; within the negatives every group (table) weighs the same, so a small
    table whose prompts look open-ended is not outvoted by a large one."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([pos, neg])
    target = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    mean, std = x.mean(0), x.std(0) + 1e-6
    groups = np.zeros(len(neg)) if neg_groups is None else np.asarray(neg_groups)
    neg_weight = np.zeros(len(neg))
    for g in np.unique(groups):
        neg_weight[groups == g] = len(neg) / (len(np.unique(groups)) * (groups == g).sum())
    weight = np.r_[np.full(len(pos), len(neg) / len(pos)), neg_weight]
    clf = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / std, target, sample_weight=weight)
    return {"mean": mean, "std": std, "w": clf.coef_[0], "b": np.array(clf.intercept_[0])}


def fit_bank_detector(bank_pooled: np.ndarray, pos: tuple, neg: tuple, neg_groups: np.ndarray | None = None,
                      k: int = 10, c: float = 0.01) -> tuple[dict, np.ndarray]:
    """`fit_detector` on [u, P, pooled, s_nn]: `pos`/`neg` are (u, tasks, pooled) triples and s_nn
    is read against `bank_pooled` (stored as the artifact will hold it). Negatives must not be bank
    prompts (they would find themselves). Returns (detector {mean, std, w, b, k}, bank)."""
    bank = stored_bank(bank_pooled)

    def features(u, tasks, pooled):
        return np.hstack([u, tasks, pooled, nearest_similarity(pooled, bank, k)[:, None]])

    return fit_detector(features(*pos), features(*neg), c=c, neg_groups=neg_groups) | {"k": k}, bank


def fit_one_scale(
    model_names: list[str],
    tasks: list[str],
    model_tables: dict[str, list[str]],
    labels: np.ndarray,
    task: np.ndarray,
    table: np.ndarray,
    *,
    open_quality: np.ndarray | None = None,
    open_models: list[str] | None = None,
    links: dict[str, str] | None = None,
    detector: dict | None = None,
    bank: np.ndarray | None = None,
    tau: float = 1.0,
    open_gate: float = 0.0,
    n0: float = 20.0,
    kappa: float = 2.0,
    margin: float = 0.1,
    base_penalty: bool = True,
) -> OneScale:
    """Fit the scale on training rows: `labels` [N, M] (NaN = no result) with task names `task` [N]
    and table ids `table` [N]; optionally an open-ended table (`open_quality` [Na, Mo], columns
    `open_models`, linked to trained models by `links`) that gets its own difficulty and slope.
    `base_penalty` False records the base/instruct gap in `info` without applying it; `bank` goes
    with a `detector` from `fit_bank_detector`."""
    n, y = task_counts(labels, task, tasks)
    direct, implied = dominance_pairs([(labels[table == t], task[table == t]) for t in np.unique(table)])
    m_trained = len(model_names)
    open_difficulty = None
    penalty = 0.0
    info = {"direct_pairs": len(direct), "implied_pairs": len(implied)}
    if open_quality is not None:
        links = links or {}
        extra = [m for m in open_models if m not in links]
        col = {m: (model_names.index(links[m]) if m in links else m_trained + extra.index(m)) for m in open_models}
        n_all = np.zeros((m_trained + len(extra), len(tasks) + 1))
        y_all = np.zeros_like(n_all)
        n_all[:m_trained, :-1], y_all[:m_trained, :-1] = n, y
        for j, m in enumerate(open_models):
            ok = ~np.isnan(open_quality[:, j])
            n_all[col[m], -1] += ok.sum()
            y_all[col[m], -1] += open_quality[ok, j].sum()
        free = np.zeros(len(tasks) + 1, bool)
        free[-1] = True
        a, d, slope = fit_rasch(n_all, y_all, direct, free_slope=free, margin=margin)
        info.update(open_slope=float(slope[-1]), open_win_difficulty=float(d[-1]),
                    linked=sorted(links), open_abilities={m: float(a[col[m]]) for m in open_models})
        gaps = [a[col[sft]] - a[col[b]] for b, sft in BASE_PAIRS if b in col and sft in col]
        info["base_gaps"] = [float(g) for g in gaps]
        penalty = float(max(0.0, np.mean(gaps))) if gaps and base_penalty else 0.0
        a, d = a[:m_trained], d[:-1]
    else:
        a, d, _ = fit_rasch(n, y, direct, margin=margin)
    measured = n.sum(0) > 0
    # no priced table measures open-ended prompts: a typical priced task's difficulty stands in
    open_difficulty = float(np.median(d[measured]))
    return OneScale(
        model_names=list(model_names), tasks=list(tasks), ability=a, difficulty=d, rows=n,
        model_tables={k: list(v) for k, v in model_tables.items()}, open_difficulty=open_difficulty,
        base=np.array([m in BASE_MODELS for m in model_names]), base_penalty=penalty,
        detector=detector or {}, bank=bank, n0=n0, tau=tau, kappa=kappa, info=info, open_gate=open_gate,
    )
