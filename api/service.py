"""The service state shared by the HTTP routes and the `pickwise select` CLI.

One object owns the live registry, the loaded predictor and the per-registry-version cache
of model vectors, and implements selection and batch planning on top of the selector. The
routes only add transport (micro-batching, threads, JSON); the CLI calls the same methods,
so both answer the same question the same way.
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import numpy as np

from pickwise.api.errors import (
    DecisionNotFound,
    ModelNotFound,
    NoFeasibleModel,
    NotReady,
    PlanCancelled,
    RequestFieldError,
    unknown_models,
)
from pickwise.api.plan_way_out import held_back, plan_way_out
from pickwise.api.schemas import (
    MAX_OUTPUT_TOKENS,
    FeedbackRequest,
    FeedbackStored,
    ModelInfo,
    PlanAssignment,
    PlanPrompt,
    PlanRequest,
    PlanResponse,
    PredictLine,
    PredictRequest,
    PredictResponse,
    SelectRequest,
    SelectResponse,
)
from pickwise.api.way_out import declared_elsewhere, describe, way_out, way_out_together
from pickwise.errors import PickwiseError
from pickwise.predictor.scale import OPEN_ENDED_AT
from pickwise.registry import (
    ModelSpec,
    Registry,
    RegistryConflict,
    RegistryError,
    RegistrySnapshot,
    UnknownModelError,
    count_tokens,
    estimate_cost_usd,
    estimate_latency_ms,
)
from pickwise.registry.decisions import DecisionStore
from pickwise.selector.batch import plan_batch
from pickwise.selector.costs import request_candidates
from pickwise.selector.errors import BudgetInfeasible, InfeasibleSelection, PlanInfeasible
from pickwise.selector.request import select_models
from pickwise.selector.workload import (
    ModelKeyError,
    Workload,
    WorkloadRow,
    build_workload,
    canonical_names,
    values_by_column,
)

if TYPE_CHECKING:
    from pickwise.predictor.inference import PromptFeatures

log = logging.getLogger("pickwise.api")
T = TypeVar("T")

PLAN_ENCODE_BATCH = 64
WARM_UP_PROMPT = "Which of these numbers is prime? A) 4 B) 6 C) 7 D) 9"
# Upper bound on prompt and output tokens any request can ask about (schemas.MAX_OUTPUT_TOKENS
# caps output and prompt_tokens; MAX_PROMPT_CHARS keeps a prompt far below it).
FIGURE_CHECK_TOKENS = MAX_OUTPUT_TOKENS


@dataclass(frozen=True)
class Scoring:
    """How every model of one registry snapshot is scored: specs and vectors in the same order.

    Models the predictor cannot score (e.g. probe results none of which are in the artifact's
    probe set), and models whose price or speed would make a cost or latency estimate overflow,
    are left out and listed in `left_out` with the reason: one bad entry never fails every request.
    """

    registry_version: str
    specs: tuple[ModelSpec, ...]
    vectors: tuple  # tuple[ModelVector, ...]
    sources: dict[str, str]
    low_confidence: dict[str, str]
    left_out: dict[str, str]
    predictor: object = field(default=None, compare=False, repr=False)  # whose vectors these are

    def columns(self, names: Sequence[str]) -> list[int]:
        index = {s.name: j for j, s in enumerate(self.specs)}
        return [index[n] for n in names if n in index]


def _estimates_are_finite(spec: ModelSpec) -> bool:
    """Whether every request's cost and latency for this model is a finite number (both grow with tokens)."""
    cost = estimate_cost_usd(spec, FIGURE_CHECK_TOKENS, FIGURE_CHECK_TOKENS)
    latency = estimate_latency_ms(spec, FIGURE_CHECK_TOKENS, FIGURE_CHECK_TOKENS)
    return math.isfinite(cost) and math.isfinite(latency)


def caller_names(snapshot: RegistrySnapshot, *named: Iterable[str] | None) -> dict[str, str]:
    """{registry name: the name the caller used} for every model the caller named by an alias (the
    first name used wins), so answers come back under names the caller can look up."""
    names: dict[str, str] = {}
    for group in named:
        for name in group or ():
            if name in snapshot and snapshot.get(name).name != name:
                names.setdefault(snapshot.get(name).name, name)
    return names


def _decided_model(decision, model: str | None, asked: str | None) -> str:
    """The model feedback on `decision` is about: the one that answered a gateway call, else the one
    chosen; `model` (the registry name of `asked`, the request's) must be that model, or one of a set."""
    if decision.answered_by is not None:
        if model is not None and model != decision.answered_by:
            raise RequestFieldError("model", f"{asked!r} is not the model that answered this call "
                                             f"({decision.answered_by})")
        return decision.answered_by
    if model is None:
        if len(decision.chosen) != 1:
            raise RequestFieldError("model", f"the decision chose a set ({', '.join(decision.chosen)}): "
                                             "name the model the score is for")
        return decision.chosen[0]
    if model not in decision.chosen:
        raise RequestFieldError("model", f"{asked!r} is not what the decision chose ({', '.join(decision.chosen)})")
    return model


def _renamed_decision(decision, names: dict[str, str]) -> dict:
    """The decision's fields with registry names replaced by the caller's."""
    if not names:
        return dict(decision)
    fields = dict(decision)
    fields["chosen"] = [names.get(n, n) for n in decision.chosen]
    fields["low_confidence"] = {names.get(n, n): why for n, why in decision.low_confidence.items()}
    fields["candidates"] = [c.model_copy(update={"name": names.get(c.name, c.name)}) for c in decision.candidates]
    return fields


def _routable(snapshot: RegistrySnapshot) -> tuple[list[ModelSpec], dict[str, str]]:
    """The models whose cost and latency estimates are finite, and why each other one is left out."""
    specs, left_out = [], {}
    for spec in snapshot.models:
        if _estimates_are_finite(spec):
            specs.append(spec)
        else:
            left_out[spec.name] = (f"its cost or latency estimate overflows for a {FIGURE_CHECK_TOKENS:,}-token "
                                   "prompt and answer; fix its pricing/latency entry")
    return specs, left_out


def _given_only(snapshot: RegistrySnapshot) -> Scoring:
    """The pool of a plan whose every prompt comes with its qualities: no model vectors needed."""
    specs, left_out = _routable(snapshot)
    return Scoring(snapshot.version, tuple(specs), (None,) * len(specs), {}, {}, left_out)


class Encoded(NamedTuple):
    """One prompt's features and the predictor that computed them: the request decides with that same
    predictor, even when a promotion swaps in another one meanwhile (never one's u with another's vectors)."""

    features: PromptFeatures
    predictor: object


@dataclass(frozen=True)
class EncodedBatch:
    """A micro-batch's features and their predictor; row i is prompt i's `Encoded`."""

    features: PromptFeatures
    predictor: object

    def __getitem__(self, i) -> Encoded:
        return Encoded(self.features[i], self.predictor)


class PlanWorkload(NamedTuple):
    snapshot: RegistrySnapshot
    workload: Workload
    capacity: np.ndarray | None
    truncated_ids: list[str]  # prompts the predictor read only the head and tail of
    predictor: object = None  # the one that scored the prompts without given qualities (None: none did)
    unreadable_ids: list[str] = []  # prompts the encoder could not read (every quality low-confidence)
    set_aside: dict[str, list[int]] = {}  # way-out field (or too_long) -> prompts (rows) only its rule left with no model
    guessed: np.ndarray | None = None  # [N, M] the quality is low-confidence (no evidence behind it)


class _PlanInputs(NamedTuple):
    snapshot: RegistrySnapshot
    predictor: object  # None when every prompt gives its qualities
    scoring: Scoring
    specs: list[ModelSpec]  # the pool, in column order
    vectors: list
    rows: list[WorkloadRow]
    capacity: np.ndarray | None


def check_model_list(snapshot: RegistrySnapshot, names: Sequence[str] | None, field: str, listing: str) -> None:
    """RequestFieldError naming `field` when a list names a model the registry does not know, or (an
    allow-list, `models`) names one model twice, by a name and its alias too. `listing`: what lists
    the models, in the front end's terms. Shared by the service and the CLI's checks before work."""
    if unknown := unknown_models(snapshot, names or (), listing):
        raise RequestFieldError(field, unknown)
    if field == "models":
        try:
            canonical_names(snapshot, names or ())
        except ModelKeyError as exc:
            raise RequestFieldError(field, str(exc)) from None


def _pool_columns(snapshot: RegistrySnapshot, column: dict[str, int], values: dict[str, T], field: str) -> dict[int, T]:
    """{pool column: value} for a request's {model name or alias: value}; a model outside the pool
    (deny-list, disabled) is ignored; an unknown one, or one named twice, is a 422 naming `field.<name>`."""
    try:
        return values_by_column(snapshot, column, values)
    except ModelKeyError as exc:
        raise RequestFieldError(f"{field}.{exc.name}", str(exc)) from None


class PickwiseService:
    """Registry + predictor + selection logic; thread-safe (called from worker threads)."""

    def __init__(self, registry: Registry, predictor=None, *, load_on_demand: Callable[[], object] | None = None,
                 outcome_store=None, decisions: DecisionStore | None = None, models_listing: str = "GET /v1/models"):
        """`predictor`: a loaded one, or None until `load_predictor` publishes one (the HTTP app loads
        it in the background); `load_on_demand`: load it the first time a call needs it (the CLI,
        which must not pay for the encoder when every prompt comes with its qualities).
        `outcome_store`: the store's path (None: the default); `decisions`: where decisions are kept
        (default: that store, with the default bounds). `models_listing`: what lists the models in the
        front end's terms, for the errors about unknown names (the CLI: `pickwise models list`)."""
        self.registry = registry
        self.models_listing = models_listing
        self._predictor = predictor
        self._load_on_demand = load_on_demand
        self.load_error: str | None = None
        self._scoring: Scoring | None = None
        self._lock = threading.Lock()
        # the one thread every torch predictor call runs on (see `encode`; an ONNX encoder's
        # micro-batches also use the batcher's other lanes); lives as long as the service
        self.encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pickwise-encode")
        self.decisions = decisions if decisions is not None else DecisionStore(outcome_store)
        self._outcome_store_path = outcome_store  # opened on the first feedback: a server that gets none makes no file
        self._outcome_store = None

    # ---- predictor ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._predictor is not None

    @property
    def current_predictor(self):
        """The predictor serving now, or None; never raises, never loads."""
        return self._predictor

    @property
    def predictor(self):
        """The loaded predictor; NotReady while it is still loading or failed to load."""
        self.check_ready()
        return self._predictor

    def check_ready(self) -> None:
        """NotReady while the predictor is still loading or failed to load (loads it if on demand)."""
        if self._predictor is None and self._load_on_demand is not None:
            loader, self._load_on_demand = self._load_on_demand, None
            self._predictor = loader()
        if self._predictor is None:  # `loading`: whether waiting helps (a failed load stays failed)
            raise NotReady(f"the predictor failed to load: {self.load_error}" if self.load_error
                           else "the predictor is still loading").add_context(loading=self.load_error is None)

    def load_predictor(self, loader: Callable[[], object]) -> str | None:
        """Run `loader` (slow: reads the artifact), warm the result and publish it, replacing any
        predictor serving now in one step (with its model vectors). Returns None, or why it failed:
        with nothing serving yet that is `load_error` (/readyz says 503); with a predictor serving,
        that one keeps serving.

        The first select would also pay one-time set-up (the encoder thread's OpenMP team and oneDNN
        kernels, the token counter's tables and the selector), so one prompt is encoded and the
        model vectors computed before publishing, and one prompt decided right after.
        """
        snapshot = self.registry.snapshot
        try:
            predictor = loader()
            features = self.encoder.submit(predictor.prompt_features, [WARM_UP_PROMPT]).result()
            scoring = self._score_models(snapshot, predictor)
        except Exception as exc:  # any failure must show on /readyz, not kill the server thread silently
            error = f"{type(exc).__name__}: {exc}"
            if self._predictor is None:
                self.load_error = error
            log.exception("predictor failed to load")
            return error
        with self._lock:
            self._predictor, self._scoring, self.load_error = predictor, scoring, None
        try:
            self.decide(SelectRequest(prompt=WARM_UP_PROMPT), features, False, snapshot, predictor=predictor)
        except PickwiseError:  # e.g. no model can be scored: nothing to warm, requests will say why
            pass
        self.log_ready(snapshot)
        return None

    def log_ready(self, snapshot: RegistrySnapshot) -> None:
        """One line when /readyz turns 200: a server's log otherwise shows only uvicorn's banner,
        printed while the predictor is still loading."""
        predictor = self._predictor
        log.info("pickwise ready: registry %s (%d models), predictor %s (%s)",
                 snapshot.version, len(snapshot), predictor.version, predictor.precision)

    # ---- model vectors, cached per registry version and predictor ------------------------------
    def scoring(self, snapshot: RegistrySnapshot, predictor=None) -> Scoring:
        """Model vectors of `predictor` (default: the serving one) for every model of `snapshot`,
        computed once per registry version. Only the serving predictor's are kept: a request still on
        the predictor a promotion replaced computes its own, never reads the new one's (or the reverse)."""
        predictor = predictor if predictor is not None else self.predictor
        current = self._scoring
        if current is not None and current.registry_version == snapshot.version and current.predictor is predictor:
            return current
        with self._lock:
            current = self._scoring
            if current is not None and current.registry_version == snapshot.version and current.predictor is predictor:
                return current
            scoring = self._score_models(snapshot, predictor)
            if predictor is self._predictor:
                self._scoring = scoring
            return scoring

    @staticmethod
    def _score_models(snapshot: RegistrySnapshot, predictor) -> Scoring:
        specs, vectors, sources, low = [], [], {}, {}
        routable, left_out = _routable(snapshot)
        for spec in routable:
            try:
                vec = predictor.model_vector(spec, snapshot)
            except (ValueError, KeyError) as exc:
                left_out[spec.name] = str(exc)
                log.warning("model %s cannot be scored: %s", spec.name, exc)
                continue
            specs.append(spec)
            vectors.append(vec)
            sources[spec.name] = vec.source
            if vec.low_confidence:
                low[spec.name] = vec.low_confidence
        return Scoring(snapshot.version, tuple(specs), tuple(vectors), sources, low, left_out, predictor)

    def encode_batch(self, prompts: Sequence[str], *, batch_size: int, single_thread: bool = False) -> EncodedBatch:
        """One micro-batch's features, on the predictor serving now (read once for the whole batch)."""
        predictor = self.predictor
        return EncodedBatch(predictor.prompt_features(prompts, batch_size=batch_size, single_thread=single_thread),
                            predictor)

    def encode(self, prompts: Sequence[str], predictor=None, stop: Callable[[], bool] | None = None) -> PromptFeatures:
        """Prompt features for the CLI and batch plans, computed on the service's one encoder thread.

        With a torch encoder every predictor call of the service runs on `self.encoder` (the routes'
        micro-batches too): once two live threads have run torch, PyTorch's OpenMP (libgomp)
        throttles its spinning threads and every encoder call slows for as long as both threads live
        (docs/performance.md).
        The prompts go in chunks of similar length, one at a time, so a select's batch waits behind
        one chunk at most. The ONNX encoder has no such threads: the micro-batcher's other lanes
        keep encoding selects meanwhile (bench/bench_api_mixed.py).
        """
        from pickwise.predictor.backbone import length_buckets  # torch: only once a predictor is loaded
        from pickwise.predictor.inference import PromptFeatures

        prompts = list(prompts)
        predictor = predictor if predictor is not None else self.predictor
        chunks = length_buckets([len(p) for p in prompts], PLAN_ENCODE_BATCH)
        parts = []
        for chunk in chunks:
            if stop is not None and stop():  # a cancelled plan job: no more encoder time for it
                raise PlanCancelled(f"cancelled after {sum(len(p) for p in parts):,} of {len(prompts):,} prompts "
                                    "were encoded")
            parts.append(self.encoder.submit(predictor.prompt_features, [prompts[i] for i in chunk],
                                             batch_size=PLAN_ENCODE_BATCH).result())
        order = np.argsort(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.intp)
        if not parts:
            return PromptFeatures(np.zeros((0, predictor.model.config.dim), dtype=np.float32), None, None, [])
        return PromptFeatures.concat(parts)[order.tolist()]

    # ---- one request -------------------------------------------------------------------------
    def check_names(self, snapshot: RegistrySnapshot, names: Sequence[str] | None, field: str,
                    scoring: Scoring | None = None) -> None:
        """422 naming `field` when an allow-list names a model the registry does not know, names one
        model twice (by a name and its alias too), or one left out of routing; for the deny-list only
        unknown names are an error."""
        check_model_list(snapshot, names, field, self.models_listing)
        if scoring is not None and field == "models":
            out = {n: scoring.left_out[snapshot.get(n).name] for n in names or () if snapshot.get(n).name in scoring.left_out}
            if out:
                raise RequestFieldError(field, "left out of routing: " + "; ".join(f"{n!r}: {why}" for n, why in out.items()))

    def check_lists(self, request: SelectRequest, snapshot: RegistrySnapshot) -> None:
        """422 on `exclude` when it denies every model the allow-list names: a request that contradicts itself
        is the caller's mistake, not a prompt no model meets (409). Checked before the prompt is encoded; a
        deny-list that only narrows the allow-list is fine."""
        if not request.models or not request.exclude:
            return
        check_model_list(snapshot, request.models, "models", self.models_listing)
        check_model_list(snapshot, request.exclude, "exclude", self.models_listing)
        allowed = {snapshot.get(n).name for n in request.models}
        if allowed <= {snapshot.get(n).name for n in request.exclude}:
            raise RequestFieldError("exclude", f"it denies every model the allow-list names ({', '.join(sorted(allowed))}): "
                                               "nothing is left to choose from; name each model in one list only")

    def decide(self, request: SelectRequest, features: PromptFeatures, truncated: bool,
               snapshot: RegistrySnapshot, *, prompt_tokens: int | None = None, output_cap: int | None = None,
               answers: int = 1, predictor=None) -> SelectResponse:
        """Selection for one prompt whose features are already computed (cheap: no transformer call).

        `prompt_tokens` overrides the prompt's token count for cost and context-window estimates: the
        gateway's predictor reads part of a conversation, but the whole conversation is sent.
        `output_cap`: a chat request's max_tokens, `answers` its n (`request_candidates` says what they change).
        `predictor`: the one that computed `features` (`Encoded.predictor`; default: the serving one)."""
        predictor = predictor if predictor is not None else self.predictor
        scoring = self.scoring(snapshot, predictor)
        self.check_names(snapshot, request.models, "models", scoring)
        self.check_names(snapshot, request.exclude, "exclude")
        constraints = request.constraints()
        if scoring.left_out and constraints.exclude:  # already out; the selector only knows scored models
            constraints.exclude = [n for n in constraints.exclude if snapshot.get(n).name not in scoring.left_out]
        tokens = count_tokens(request.prompt) if prompt_tokens is None else prompt_tokens
        evidence = predictor.evidence(features.u, scoring.vectors, features.tasks, pooled=features.pooled,
                                      unknown=features.unknown)
        output_tokens = request.expected_output_tokens
        if output_tokens is None:  # each model's predicted answer length (its registry figure where it has none)
            output_tokens = predictor.output_tokens(features.u, scoring.specs, evidence.open_ended, snapshot,
                                                   features.tasks, options=features.options)[0][0]

        def figures(output_tokens) -> list:
            return request_candidates(scoring.specs, tokens, evidence.quality[0],
                                      low_confidence=evidence.low_confidence[0], output_tokens=output_tokens,
                                      support=evidence.support[0], evidence_rows=evidence.rows[0],
                                      open_ended=bool(evidence.open_ended[0] >= OPEN_ENDED_AT),
                                      output_cap=output_cap, answers=answers)

        candidates = figures(output_tokens)
        names = caller_names(snapshot, request.models)
        try:
            decision = select_models(candidates, constraints, set_rho=predictor.set_rho)
        except InfeasibleSelection as exc:
            blocking = {names.get(n, n): why for n, why in exc.blocking.items()}
            # a shorter expected_output_tokens is a way out only where it decides what fits (no cap does)
            told = request.expected_output_tokens is not None and output_cap is None
            ways = way_out(candidates, constraints, predictor.set_rho, figures if told else None)
            together = {} if ways else way_out_together(candidates, constraints, predictor.set_rho)
            unreadable = evidence.unreadable[0]
            short = NoFeasibleModel(blocking, ways,
                                    describe(blocking, ways, constraints.on_infeasible, together, unreadable,
                                             declared_elsewhere(snapshot, blocking)), together)
            short.add_context(registry_version=snapshot.version, predictor_version=predictor.version)
            if unreadable:
                short.add_context(unreadable=True)
            raise short from None
        return SelectResponse.model_construct(
            **_renamed_decision(decision, names), resolved={v: k for k, v in names.items()},
            registry_version=snapshot.version, predictor_version=predictor.version,
            prompt_tokens=tokens, truncated=bool(truncated), unreadable=evidence.unreadable[0],
            left_out=dict(scoring.left_out),
            open_ended=float(evidence.open_ended[0]), reads_as={} if evidence.unreadable[0] else (predictor.reads_as(features.tasks) or [{}])[0],
            set_rho=predictor.set_rho,
        )

    def select(self, request: SelectRequest) -> SelectResponse:
        """`decide` with the prompt vector computed here (one predictor call): the CLI's path."""
        snapshot = self.registry.refresh()
        self.check_lists(request, snapshot)
        predictor = self.predictor
        features = self.encode([request.prompt], predictor)
        return self.decide(request, features, features.truncated[0], snapshot, predictor=predictor)

    # ---- per-prompt qualities ------------------------------------------------------------------
    def predict(self, request: PredictRequest) -> PredictResponse:
        """Every prompt's quality per model, with the lines `pickwise predict` writes."""
        snapshot = self.registry.refresh()
        predictor = self.predictor  # once: every prompt of the request on the same one
        scoring = self.scoring(snapshot, predictor)
        self.check_names(snapshot, request.models, "models", scoring)
        if request.models:
            called: dict[str, str] = {}  # registry name -> the name asked for (a name and its alias: scored once)
            for name in request.models:
                called.setdefault(snapshot.get(name).name, name)
        else:
            called = {s.name: s.name for s in scoring.specs if s.enabled}
        columns = scoring.columns(list(called))
        names = [scoring.specs[j].name for j in columns]
        features = self.encode([p.prompt for p in request.prompts], predictor)
        evidence = predictor.evidence(features.u, [scoring.vectors[j] for j in columns], features.tasks,
                                      pooled=features.pooled, unknown=features.unknown)
        lines = []
        for i, prompt in enumerate(request.prompts):
            low = evidence.low_confidence[i]
            lines.append(PredictLine.model_construct(
                id=prompt.id, quality={called[n]: round(float(p), 6) for n, p in zip(names, evidence.quality[i])},
                truncated=True if features.truncated[i] else None,
                unreadable=True if evidence.unreadable[i] else None,
                low_confidence={called[n]: why for n, why in sorted(low.items())} or None))
        return PredictResponse(
            registry_version=snapshot.version, predictor_version=predictor.version,
            predictor_precision=predictor.precision, models=[called[n] for n in names],
            left_out=dict(scoring.left_out) if request.models is None else {},
            resolved={asked: name for name, asked in called.items() if asked != name}, predictions=lines)

    # ---- batch planning ------------------------------------------------------------------------
    def _plan_inputs(self, request: PlanRequest) -> _PlanInputs:
        """Everything a plan needs before encoding, checked: the pool, the rows and the capacities
        (RequestFieldError naming the field when a name is unknown or given twice)."""
        snapshot = self.registry.refresh()
        predictor = self.predictor if any(p.quality is None for p in request.prompts) else None
        scoring = self.scoring(snapshot, predictor) if predictor is not None else _given_only(snapshot)
        pool = self._plan_pool(snapshot, scoring, request)
        specs = [scoring.specs[j] for j in pool]
        column = {s.name: k for k, s in enumerate(specs)}
        rows = [self._plan_row(snapshot, column, i, p) for i, p in enumerate(request.prompts)]
        capacity = None
        if request.capacity:
            capacity = np.full(len(specs), len(rows), dtype=np.int64)
            for k, cap in _pool_columns(snapshot, column, request.capacity, "capacity").items():
                capacity[k] = min(cap, len(rows))  # more places than prompts is no limit (and fits an int64)
        return _PlanInputs(snapshot, predictor, scoring, specs, [scoring.vectors[j] for j in pool], rows, capacity)

    def check_plan(self, request: PlanRequest) -> None:
        """The 422s `plan` would raise before encoding, for a job's submission to answer at once
        (the job checks again when it runs: the registry may change meanwhile)."""
        self._plan_inputs(request)

    def workload(self, request: PlanRequest, stop: Callable[[], bool] | None = None) -> PlanWorkload:
        """The request's prompts x its pool: given qualities or predicted ones, registry costs and
        latencies, and what fits (the matrices `plan` and the CLI's `universe` decide on). `stop`:
        asked between encoder chunks; once it says so, PlanCancelled ends the work."""
        snapshot, predictor, scoring, specs, vectors, rows, capacity = self._plan_inputs(request)
        truncated_ids: list[str] = []
        unreadable_ids: list[str] = []

        unsure: list[np.ndarray] = []  # [k, M] per scored prompt: no evidence behind the quality
        open_ended: list[np.ndarray] = []  # [k] per scored prompt: reads as open-ended
        predicted = [i for i, row in enumerate(rows) if row.quality is None]
        # answer lengths: the request's, else per prompt and model (registry figures for prompts given
        # with their qualities); `score` fills the predicted rows before build_workload prices them
        lengths = request.expected_output_tokens if request.expected_output_tokens is not None else \
            np.tile(np.array([s.expected_output_tokens for s in specs], dtype=np.float64), (len(rows), 1))

        def score(texts: list[str]) -> np.ndarray:
            features = self.encode(texts, predictor, stop)
            truncated_ids.extend(row.id for row, c in zip((r for r in rows if r.quality is None), features.truncated)
                                 if c)
            evidence = predictor.evidence(features.u, vectors, features.tasks, pooled=features.pooled,
                                          unknown=features.unknown)
            unreadable_ids.extend(row.id for row, bad in zip((r for r in rows if r.quality is None), evidence.unreadable)
                                  if bad)
            unsure.append(np.array([[name in low for name in evidence.models] for low in evidence.low_confidence],
                                   dtype=bool).reshape(len(texts), len(vectors)))
            open_ended.append(evidence.open_ended >= OPEN_ENDED_AT)
            if isinstance(lengths, np.ndarray):
                lengths[predicted] = predictor.output_tokens(features.u, specs, evidence.open_ended, snapshot,
                                                             features.tasks, options=features.options)[0]
            return evidence.quality

        workload = build_workload(rows, specs, score, output_tokens=lengths)
        held: dict[str, np.ndarray] = {}  # request field that would lift a rule -> the [N, M] entries it removed
        if unsure and request.min_quality is not None and not request.allow_low_confidence:
            # under a floor, a prompt goes only to a model whose quality has evidence behind it
            held["allow_low_confidence"] = np.zeros_like(workload.allowed)
            held["allow_low_confidence"][predicted] = workload.allowed[predicted] & unsure[0]
            workload.allowed[predicted] &= ~unsure[0]
        if open_ended and not request.allow_base_models:  # open-ended prompts go to instruction-tuned models
            base = np.array([s.base_model for s in specs], dtype=bool)
            rows_open = np.asarray(predicted)[open_ended[0]]
            held["allow_base_models"] = np.zeros_like(workload.allowed)
            held["allow_base_models"][rows_open] = workload.allowed[rows_open] & base
            workload.allowed[rows_open] &= ~base
        set_aside = held_back(workload, held, min_quality=request.min_quality, max_latency_ms=request.max_latency_ms)
        if workload.too_long.any():
            set_aside["too_long"] = np.flatnonzero(workload.too_long).tolist()
        guessed = np.zeros_like(workload.allowed)
        if unsure:
            guessed[predicted] = unsure[0]
        workload.quality[~workload.allowed] = 0.0
        workload.low_confidence = {s.name: scoring.low_confidence[s.name] for s in specs
                                   if s.name in scoring.low_confidence}
        if (can := workload.allowed.any(axis=0)).any() and not can.all():
            # a model no prompt may go to (absent from every line's own qualities, say) is no candidate
            workload = workload.columns(can)
            capacity = capacity[can] if capacity is not None else None
            guessed = guessed[:, can]
        return PlanWorkload(snapshot, workload, capacity, truncated_ids, predictor, unreadable_ids, set_aside, guessed)

    def plan(self, request: PlanRequest, stop: Callable[[], bool] | None = None) -> PlanResponse:
        """One model per prompt under the request's budget or quality target (see selector.batch);
        `stop` as `workload` takes it (a plan job's cancellation)."""
        planned = self.workload(request, stop)
        snapshot, workload, capacity = planned.snapshot, planned.workload, planned.capacity
        names = workload.names
        prompts = request.prompts
        try:
            plan = plan_batch(
                workload.quality, workload.cost_usd, budget=request.budget, min_avg_quality=request.min_avg_quality,
                min_quality=request.min_quality, latency=workload.latency_ms, max_latency_ms=request.max_latency_ms,
                capacity=capacity, allowed=workload.allowed, solver=request.solver, model_names=names,
                prompt_ids=[p.id for p in prompts], time_limit=request.time_limit,
                gap_tolerance=request.gap_tolerance,
            )
        except BudgetInfeasible:
            raise
        except PlanInfeasible as exc:
            exc = plan_way_out(exc, planned.set_aside)
            exc.add_context(prompt_ids=[prompts[i].id for i in exc.rows])
            raise exc from None

        called = caller_names(snapshot, request.models, *(p.quality for p in prompts))
        names = [called.get(n, n) for n in names]
        assignments = [
            PlanAssignment(id=p.id, model=names[j], quality=float(workload.quality[i, j]),
                           cost_usd=float(workload.cost_usd[i, j]), latency_ms=float(workload.latency_ms[i, j]))
            for i, (p, j) in enumerate(zip(prompts, plan.assignment))
        ]
        used = {names[j] for j in plan.assignment}
        plan = plan.model_copy(update={
            "model_names": names,
            "count_per_model": {called.get(n, n): c for n, c in plan.count_per_model.items()}})
        return PlanResponse(
            **dict(plan), assignments=assignments, resolved={v: k for k, v in called.items()},
            low_confidence={called.get(k, k): v for k, v in workload.low_confidence.items() if called.get(k, k) in used},
            truncated=planned.truncated_ids, unreadable=planned.unreadable_ids, registry_version=snapshot.version,
            guessed=[p.id for i, (p, j) in enumerate(zip(prompts, plan.assignment)) if planned.guessed[i, j]],
            predictor_version=planned.predictor.version if workload.predicted_lines else None,
        )

    @staticmethod
    def _plan_row(snapshot: RegistrySnapshot, column: dict[str, int], i: int, prompt: PlanPrompt) -> WorkloadRow:
        """One prompt of a plan request as a workload row. The prompt text, when given, sets the
        token count; prompt_tokens only stands in for a missing text."""
        quality = None
        if prompt.quality is not None:
            quality = _pool_columns(snapshot, column, prompt.quality, f"prompts.{i}.quality")
        tokens = None if prompt.prompt is not None else (prompt.prompt_tokens or 0)
        return WorkloadRow(prompt.id, prompt.prompt, tokens, quality)

    def _plan_pool(self, snapshot: RegistrySnapshot, scoring: Scoring, request: PlanRequest) -> list[int]:
        """Columns of `scoring` a plan may use: enabled, allowed, not denied."""
        self.check_names(snapshot, request.models, "models", scoring)
        self.check_names(snapshot, request.exclude, "exclude")
        denied = {snapshot.get(n).name for n in request.exclude}
        allowed = None if request.models is None else {snapshot.get(n).name for n in request.models}
        pool = [j for j, s in enumerate(scoring.specs)
                if s.enabled and s.name not in denied and (allowed is None or s.name in allowed)]
        if not pool:
            disabled = sorted(s.name for s in scoring.specs
                              if not s.enabled and s.name not in denied and (allowed is None or s.name in allowed))
            why = f" ({', '.join(disabled)} {'is' if len(disabled) == 1 else 'are'} disabled)" if disabled else ""
            raise RequestFieldError("models", f"no enabled, scorable model is left after the allow- and deny-lists{why}")
        return pool

    # ---- outcomes ----------------------------------------------------------------------------
    @property
    def outcome_store(self):
        """The outcome store (`pickwise.registry.outcomes`), opened once."""
        with self._lock:
            if self._outcome_store is None:
                from pickwise.registry.outcomes import OutcomeStore

                self._outcome_store = OutcomeStore(self._outcome_store_path)
            return self._outcome_store

    def record_decision(self, prompt: str, response: SelectResponse, encoded: Encoded, **answer) -> str | None:
        """Keep a decision for feedback by its id, with the prompt's u and the encoder that made it;
        returns the id (None when it could not be kept). `answer`: the gateway's `decision_id`,
        `answered_by`, `output_tokens` and `latency_ms`, as DecisionStore.record takes them."""
        chosen = [response.resolved.get(n, n) for n in response.chosen]
        return self.decisions.record(prompt, chosen, encoded.features.u[0], encoded.predictor.encoder_version,
                                     **answer)

    def feedback(self, request: FeedbackRequest) -> FeedbackStored:
        """Store one outcome (committed before this returns), by decision id or by prompt and model; feedback
        on a decision replaces earlier feedback on that decision and model."""
        from pickwise.registry.jsonl import lone_surrogate
        from pickwise.registry.outcomes import Outcome, check_output_tokens, check_tags, prompt_sha256

        for name, value in (("prompt", request.prompt), ("model", request.model), ("tags", request.tags)):
            surrogate = lone_surrogate(value)  # no hash or UTF-8 export can encode it
            if surrogate:
                raise RequestFieldError(name, f"{name} {surrogate}")
        try:
            check_tags(request.tags)
        except ValueError as exc:
            raise RequestFieldError("tags", str(exc)) from None
        snapshot = self.registry.refresh()
        model = None
        if request.model is not None:
            if request.model not in snapshot:
                raise RequestFieldError("model", f"unknown model {request.model!r}{snapshot.did_you_mean(request.model)} "
                                                 "(not in the registry)")
            model = snapshot.get(request.model).name
        output_tokens, latency_ms, cost_usd = request.output_tokens, request.latency_ms, request.cost_usd
        if request.decision_id is not None:
            decision = self._decision(request.decision_id)
            model = _decided_model(decision, model, request.model)
            prompt, sha, u, encoder = decision.prompt, decision.prompt_sha256, decision.u, decision.encoder
            output_tokens = output_tokens if output_tokens is not None else decision.output_tokens
            latency_ms = latency_ms if latency_ms is not None else decision.latency_ms
            cost_usd = cost_usd if cost_usd is not None else decision.cost_usd
        else:
            prompt, sha, u, encoder = request.prompt, prompt_sha256(request.prompt), None, None
        if model in snapshot:  # the caller's length only: a decision's own is what the gateway saw answered
            try:
                check_output_tokens(request.output_tokens, model, snapshot.get(model).max_output_tokens)
            except ValueError as exc:
                raise RequestFieldError("output_tokens", f"output_tokens {exc}") from None
        keep = request.keep_prompt and prompt is not None  # a decision kept without its text has only the hash
        if not keep and u is None:
            predictor = self.predictor
            u, encoder = self.encode([prompt], predictor).u[0], predictor.encoder_version
        outcome = Outcome(
            model=model, score=float(request.score), prompt=prompt if keep else None, prompt_sha256=sha,
            prompt_vector=None if keep else tuple(float(x) for x in np.asarray(u, dtype=np.float32)),
            vector_encoder=None if keep else encoder,
            cost_usd=cost_usd, latency_ms=latency_ms, output_tokens=output_tokens,
            decision_id=request.decision_id, tags=request.tags)
        if request.decision_id is None:
            self.outcome_store.add([outcome])
            replaced = False
        else:
            replaced = self.outcome_store.add_feedback(outcome)
        return FeedbackStored(model=model, prompt_sha256=sha, decision_id=request.decision_id, prompt_kept=keep,
                              replaced=replaced)

    def _decision(self, decision_id: str):
        decision = self.decisions.get(decision_id)
        if decision is None:
            keep = self.decisions.keep_s
            span = f"{keep / 86400:g} day(s)" if keep >= 86400 else f"{keep / 3600:g} hour(s)"
            raise DecisionNotFound(f"unknown decision {decision_id!r}: decisions are kept in the outcome store for "
                                   f"{span}, at most {self.decisions.max_rows:,} (a gateway call naming its model, or "
                                   "answered by none, keeps none); send the prompt and model instead")
        return decision

    # ---- registry ----------------------------------------------------------------------------
    def model_info(self, spec: ModelSpec, snapshot: RegistrySnapshot) -> ModelInfo:
        scoring = self.scoring(snapshot) if self.ready else None
        return ModelInfo.model_validate({
            **spec.model_dump(),
            "source_file": snapshot.source_file(spec.name).name,
            "source": snapshot.source(spec.name),
            "scoring": scoring.sources.get(spec.name) if scoring else None,
            "low_confidence": (scoring.low_confidence.get(spec.name) or scoring.left_out.get(spec.name))
            if scoring else None,
        })

    def get_model(self, name: str) -> tuple[ModelInfo, RegistrySnapshot]:
        snapshot = self.registry.refresh()
        try:
            spec = snapshot.get(name)
        except UnknownModelError:
            raise ModelNotFound(name, snapshot.did_you_mean(name), self.models_listing) from None
        return self.model_info(spec, snapshot), snapshot

    def add_model(self, text: str, fmt: str, *, replace: str | None = None) -> tuple[ModelInfo, RegistrySnapshot]:
        """Validate and write one model atomically, then score it at once (cold-start fit, ms).
        RegistryConflict when its name is taken or the registry on disk is broken, RegistryError
        when the entry itself is invalid. `replace`: the name (or alias) of a model the entry replaces
        (or adds, if there is none yet), as PUT /v1/models/NAME asks."""
        try:
            spec = self.registry.add_model(text, fmt=fmt, replace=replace is not None, name=replace)
        except RegistryError as exc:  # files named relative to the registry: callers never learn where it lives
            raise exc.relative_to(self.registry.directory) from None
        snapshot = self.registry.snapshot
        return self.model_info(snapshot.get(spec.name), snapshot), snapshot

    def remove_model(self, name: str) -> tuple[str, RegistrySnapshot]:
        try:
            spec = self.registry.remove_model(name)
        except UnknownModelError:
            raise ModelNotFound(name, self.registry.snapshot.did_you_mean(name), self.models_listing) from None
        except RegistryConflict as exc:
            raise exc.relative_to(self.registry.directory) from None
        except RegistryError as exc:  # another model depends on it: the registry's state forbids it
            raise RegistryConflict(exc.errors).relative_to(self.registry.directory) from None
        snapshot = self.registry.snapshot
        if self.ready:
            self.scoring(snapshot)
        return spec.name, snapshot
