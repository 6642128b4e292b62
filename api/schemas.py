"""Request and response bodies of the service, shared by both front ends (the HTTP API's
bodies and OpenAPI schema at /docs, the CLI's --json output).

Requests forbid unknown keys and non-finite numbers, so a typo (`min_qualty`) or a NaN is a
422 naming the field instead of a silently ignored constraint.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pickwise.registry import ModelSpec
from pickwise.registry.prompt_text import not_blank
from pickwise.selector.batch import Solver
from pickwise.selector.types import BatchPlan, Decision, QualityFloor, SelectionConstraints

# A prompt longer than this is refused (422 on `prompt`). The predictor reads only the head and
# tail of a prompt (128 tokens), but its full length sets the cost estimate and the context-window
# check, so it is counted, not cut. 200k chars is ~50k tokens.
MAX_PROMPT_CHARS = 200_000

MAX_OUTPUT_TOKENS = 10_000_000  # bound on expected_output_tokens: keeps cost arithmetic finite
MAX_WILLINGNESS_TO_PAY = 1e9  # bound on lambda: keeps quality - lambda * cost finite
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]

SELECT_EXAMPLE = {
    "prompt": "Write a Python function that checks whether a string is a palindrome.",
    "min_quality": 0.7,
    "max_cost_usd": 0.01,
}


# ---- errors ------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Every error: a short code and a message for people."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="short machine-readable code, e.g. validation_error, infeasible")
    detail: str = Field(description="what is wrong and where")


class ValidationErrorBody(ErrorBody):
    """422: the request body (or a registry entry) is invalid; `errors` names every field.

    Body fields come as {loc: ['body', 'prompt'], msg, type}; registry entries as
    {message, file, model, field, line}.
    """

    errors: list[dict[str, Any]] = Field(default_factory=list)


class InfeasibleBody(ErrorBody):
    """409 from /v1/select: no model or model set meets the constraints."""

    blocking: dict[str, list[str]] = Field(description="per model, the constraints that rule it out")
    way_out: dict[str, float | bool] = Field(
        default_factory=dict,
        description="for each of min_quality, max_cost_usd, max_latency_ms, allow_low_confidence, "
                    "allow_base_models and expected_output_tokens the request "
                    "set, the value that alone makes it feasible (the highest floor, the smallest caps, the longest "
                    "answer some model takes), if any")
    way_out_together: dict[str, float | bool] = Field(
        default_factory=dict,
        description="where no single change helps: changes that make it feasible together (allow_low_confidence "
                    "with the highest min_quality it then admits)")
    registry_version: str
    predictor_version: str


class PlanInfeasibleBody(ErrorBody):
    """409 from /v1/plan: no assignment meets the constraints."""

    reason: str = Field(description="'no allowed model' | 'capacity' | 'quality target' | 'budget'")
    prompt_ids: list[str] = Field(default_factory=list, description="prompts with no allowed model")
    way_out: dict[str, bool] = Field(
        default_factory=dict, description="allow_low_confidence and/or allow_base_models: true where that rule is what "
                                          "left some of those prompts with no model (the detail says how many)")
    budget: float | None = None
    min_budget: float | None = Field(None, description="smallest budget that makes the plan feasible")


PromptText = Annotated[str, AfterValidator(not_blank)]  # a prompt that is more than whitespace
# the length checked before the blank check, so an optional prompt's error says "characters", not "items after validation"
BoundedPromptText = Annotated[str, Field(max_length=MAX_PROMPT_CHARS), AfterValidator(not_blank)]


# ---- selection ---------------------------------------------------------------------------
class SelectRequest(SelectionConstraints):
    """One prompt and the selector's constraints (all optional; default objective min_cost)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [SELECT_EXAMPLE]})

    prompt: PromptText = Field(min_length=1, max_length=MAX_PROMPT_CHARS,
                               description=f"the prompt to route (at most {MAX_PROMPT_CHARS:,} characters)")
    expected_output_tokens: int | None = Field(
        None, ge=0, le=MAX_OUTPUT_TOKENS, description="override each model's expected output length"
    )
    willingness_to_pay: float | None = Field(
        None, ge=0.0, le=MAX_WILLINGNESS_TO_PAY,
        description="lambda for 'balanced': USD the caller would pay for +1.0 quality",
    )

    def constraints(self) -> SelectionConstraints:
        return SelectionConstraints.model_validate(self.model_dump(exclude={"prompt"}))


class SelectResponse(Decision):
    """The selector's decision plus what it was computed from."""

    registry_version: str
    predictor_version: str
    prompt_tokens: int = Field(description="prompt length in the registry's token count (sets cost estimates)")
    truncated: bool = Field(description="the predictor read only the head and tail of a long prompt")
    unreadable: bool = Field(False, description="most of the prompt's tokens are unknown to the predictor's encoder "
                                                "(emoji, or a script outside its vocabulary): every quality is a "
                                                "low-confidence guess")
    left_out: dict[str, str] = Field(
        default_factory=dict,
        description="registry models left out (the predictor cannot score them, or their figures overflow), and why",
    )
    open_ended: float = Field(0.0, description="how much the prompt reads as open-ended (chat, writing, advice): "
                                               "no priced table measures such prompts, so qualities there rank models "
                                               "by general ability and are flagged low-confidence")
    reads_as: dict[str, float] = Field(
        default_factory=dict,
        description="the tasks ('table/task') the prompt reads as most, with their share of the task posterior: "
                    "qualities are those tasks' pass rates as their tables grade them (LLMRouter's trivia_qa, "
                    "graded by exact match, keeps every model near 0.2)")
    set_rho: float = Field(0.0, description="share of a set's failures taken as common-mode in its quality")
    resolved: dict[str, str] = Field(
        default_factory=dict,
        description="models the request named by an alias: {the name used: the registry model it resolved to}; "
                    "the decision answers under the name used",
    )
    decision_id: str | None = Field(
        None, description="the HTTP service's id of this decision: POST /v1/feedback {decision_id, score} reports "
                          "how the chosen model did (kept in the outcome store, by default for 7 days, at most "
                          "1,000,000 decisions; null when it could not be kept)")


# ---- batch planning ----------------------------------------------------------------------
class PlanPrompt(BaseModel):
    """One prompt of a batch: its text, or precomputed qualities (then the predictor is skipped)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    id: str = Field(min_length=1, max_length=256)
    prompt: BoundedPromptText | None = None
    quality: dict[str, Probability] | None = Field(
        None, min_length=1, description="your own P(answers well) per model; only these models are considered"
    )
    prompt_tokens: int | None = Field(
        None, ge=0, le=MAX_OUTPUT_TOKENS, description="prompt length for cost when no prompt text is given (default 0)"
    )

    @model_validator(mode="after")
    def _text_or_quality(self) -> PlanPrompt:
        if self.prompt is None and self.quality is None:
            raise ValueError("give 'prompt' or 'quality'")
        return self


class PlanRequest(BaseModel):
    """A batch to assign one model per prompt: under `budget`, or at least `min_avg_quality` for least cost."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, strict=True,  # no `true` budgets or "0.5" floors (see SelectionConstraints)
        json_schema_extra={"examples": [{"prompts": [{"id": "a", "prompt": "What is 2+2?"},
                                                     {"id": "b", "quality": {"gpt-4o": 0.9, "gpt-4o-mini": 0.7}}],
                                         "budget": 0.01}]},
    )

    prompts: list[PlanPrompt]
    budget: float | None = Field(None, ge=0.0, description="total USD for the batch")
    min_avg_quality: float | None = Field(None, ge=0.0, le=1.0, description="mean predicted quality to reach at least cost")
    min_quality: QualityFloor = Field(None, description="floor for every prompt's chosen model (0: none)")
    max_latency_ms: float | None = Field(None, gt=0.0, description="latency cap for every prompt")
    models: list[str] | None = Field(None, min_length=1,  # an empty allow-list could only ever be infeasible
                                     description="allow-list (names or aliases); leave it out for every model")
    exclude: list[str] = Field(default_factory=list, description="deny-list (names or aliases)")
    capacity: dict[str, Annotated[int, Field(ge=0)]] | None = Field(None, description="at most n prompts per model")
    allow_low_confidence: bool = Field(
        False, description="let a low-confidence quality meet min_quality; by default a prompt whose model has no "
                           "evidence for it cannot be assigned under a floor")
    allow_base_models: bool = Field(
        False, description="let a base (not instruction-tuned) model take a prompt read as open-ended (chat, writing, "
                           "advice); by default such prompts go only to instruction-tuned models")
    expected_output_tokens: int | None = Field(None, ge=0, le=MAX_OUTPUT_TOKENS)
    solver: Solver = "auto"
    time_limit: float | None = Field(None, gt=0.0, description="seconds for the exact solver (default: none)")
    gap_tolerance: float = Field(1e-4, ge=0.0, le=1.0, description="accepted certified relative gap of the exact solver")

    @model_validator(mode="after")
    def _unique_ids(self) -> PlanRequest:
        seen: set[str] = set()
        dup = [p.id for p in self.prompts if p.id in seen or seen.add(p.id)]
        if dup:
            raise ValueError(f"duplicate prompt id(s): {', '.join(sorted(set(dup))[:10])}")
        return self


# ---- per-prompt qualities ----------------------------------------------------------------
class PredictPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str
    prompt: PromptText = Field(max_length=MAX_PROMPT_CHARS)


class PredictRequest(BaseModel):
    """Prompts to score against every enabled model (or the allow-list), as `pickwise predict` does."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{"prompts": [{"id": "q1", "prompt": "What is 2+2?"}]}]},
    )

    prompts: list[PredictPrompt] = Field(min_length=1)
    models: list[str] | None = Field(None, min_length=1,
                                     description="models to score (names or aliases); leave it out for every enabled one")

    @model_validator(mode="after")
    def _unique_ids(self) -> PredictRequest:
        seen: set[str] = set()
        dup = [p.id for p in self.prompts if p.id in seen or seen.add(p.id)]
        if dup:
            raise ValueError(f"duplicate prompt id(s): {', '.join(sorted(set(dup))[:10])}")
        return self


class PredictLine(BaseModel):
    """One prompt's line, as `pickwise predict` writes it: `truncated`, `unreadable` and `low_confidence`
    only when set."""

    id: str
    quality: dict[str, float] = Field(description="P(answers acceptably) per model, rounded to 6 decimals")
    truncated: Literal[True] | None = Field(None, description="the predictor read only the head and tail")
    unreadable: Literal[True] | None = Field(None, description="most of its tokens are unknown to the encoder: "
                                                                "every quality is a low-confidence guess")
    low_confidence: dict[str, str] | None = Field(None, description="models whose quality has no evidence here, and why")


class PredictResponse(BaseModel):
    registry_version: str
    predictor_version: str
    predictor_precision: str
    models: list[str] = Field(description="the models scored, under the names the request used")
    left_out: dict[str, str] = Field(default_factory=dict, description="enabled models that cannot be scored, and why")
    resolved: dict[str, str] = Field(default_factory=dict,
                                     description="models named by an alias: {the name used: the registry model}")
    predictions: list[PredictLine]


class PlanAssignment(BaseModel):
    id: str
    model: str
    quality: float
    cost_usd: float
    latency_ms: float


class PlanResponse(BatchPlan):
    """The selector's plan (assignment as indices into model_names, totals, solver, certified gap),
    plus the assignment spelled out per prompt id and what the plan was computed from."""

    assignments: list[PlanAssignment]
    low_confidence: dict[str, str] = Field(default_factory=dict)
    truncated: list[str] = Field(default_factory=list, description="ids of prompts the predictor read head+tail only")
    unreadable: list[str] = Field(default_factory=list,
                                  description="ids of prompts the encoder could not read (mostly unknown tokens): "
                                              "their qualities are low-confidence")
    guessed: list[str] = Field(default_factory=list,
                               description="ids of prompts assigned to a model whose quality there is low-confidence "
                                           "(no evidence behind it): a floor keeps such qualities out; a budget or "
                                           "max_quality plan takes them at face value")
    registry_version: str
    predictor_version: str | None = Field(description="None when every prompt came with its own qualities")
    resolved: dict[str, str] = Field(
        default_factory=dict,
        description="models the request named by an alias: {the name used: the registry model}; "
                    "assignments answer under the name used",
    )


class PlanJob(BaseModel):
    """An asynchronous plan: its state, then its result (or the error that ended it)."""

    id: str
    status: JobState
    prompts: int
    created_at: float = Field(description="unix seconds")
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = Field(None, description="when a finished job is forgotten (unix seconds)")
    result: PlanResponse | None = None
    error: ErrorBody | None = None


# ---- registry ----------------------------------------------------------------------------
class ModelInfo(ModelSpec):
    """A registry entry plus how the predictor scores it."""

    source_file: str = Field(description="registry file (name only) that defines the model")
    source: Literal["shipped", "user", "registry"] = Field(
        description="shipped: ships with pickwise; user: the server's own registry folder over the shipped one; "
                    "registry: a registry of one directory (`serve --registry DIR`)")
    scoring: str | None = Field(
        None, description="trained | outcomes | probe | similar_to | benchmark_score | population (None before the predictor loads)"
    )
    low_confidence: str | None = Field(None, description="why its predicted quality is a prior, if it is")


class ModelList(BaseModel):
    registry_version: str
    models: list[ModelInfo]


class ModelWritten(BaseModel):
    registry_version: str
    model: ModelInfo


class ModelRemoved(BaseModel):
    registry_version: str
    removed: str


# ---- the OpenAI-compatible gateway ---------------------------------------------------------
class OpenAIErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, rate_limit_error, "
                                  "upstream_error, service_unavailable or server_error")
    param: str | None = Field(None, description="the request field at fault, if one is")
    code: str | None = Field(None, description="short machine-readable code, e.g. model_not_found, upstream_failed")


class OpenAIErrorBody(BaseModel):
    """Every error under /openai/v1, in OpenAI's shape; pickwise's facts (`blocking`, `attempts`, ...) are
    inside `error`."""

    error: OpenAIErrorDetail


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


# ---- health ------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    predictor_version: str
    predictor_precision: str  # how the encoder runs: fp32, bf16, int8 or onnx-int8 (serve --precision)
    registry_version: str
    models: int
    registry_error: str | None = Field(None, description="why the registry's files, changed on disk, do not load "
                                                         "(the last good snapshot keeps serving); null when they do")
    artifact_error: str | None = Field(None, description="why the artifact the promotion pointer names does not "
                                                         "load (the predictor of predictor_version keeps serving); "
                                                         "null when it serves, or when serve was given --artifact")


# ---- outcomes ------------------------------------------------------------------------------
class FeedbackRequest(BaseModel):
    """How a model did on a prompt: by the decision that chose it, or by prompt and model."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, json_schema_extra={
        "examples": [{"decision_id": "3f2c9d0e8a7b4c1d9e6f5a4b3c2d1e0f", "score": 1.0},
                     {"prompt": "What is 2+2?", "model": "gpt-3.5-turbo-1106", "score": 0.0, "cost_usd": 0.00002}]})

    decision_id: str | None = Field(None, min_length=1, max_length=64,
                                    description="from a /v1/select answer, or a routed gateway call's "
                                                "x-pickwise-decision-id header; gives the prompt and the model")
    prompt: PromptText | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS,
                                      description="instead of decision_id")
    model: str | None = Field(None, min_length=1, description="name or alias; with decision_id, only needed when a "
                                                               "set of models was chosen (one of them); for a gateway "
                                                               "call, the model that answered")
    score: Probability = Field(description="how well the model answered, in [0, 1] (1: acceptably)")
    cost_usd: float | None = Field(None, ge=0.0, description="what the call cost; by default a gateway call's, "
                                                               "from its usage at the registry's list prices")
    latency_ms: float | None = Field(None, ge=0.0, description="by default a gateway call's answer time")
    output_tokens: int | None = Field(None, ge=0, description="the answer's length, at most the model's registry "
                                                              "max_output_tokens; by default a gateway call's "
                                                              "usage.completion_tokens")
    tags: dict[str, Any] | None = Field(None, description="free JSON, stored as given")
    keep_prompt: bool = Field(True, description="false: store the prompt's sha256 and its vector, not its text")

    @model_validator(mode="after")
    def _one_source(self) -> FeedbackRequest:
        if (self.decision_id is None) == (self.prompt is None):
            raise ValueError("give either decision_id or prompt (with model), not both or neither")
        if self.prompt is not None and self.model is None:
            raise ValueError("feedback by prompt needs the model that answered it")
        return self


class FeedbackStored(BaseModel):
    """201: the outcome is committed to the store."""

    stored: int = 1
    model: str = Field(description="the registry name it was stored under")
    prompt_sha256: str
    decision_id: str | None = None
    prompt_kept: bool
    replaced: bool = Field(False, description="it replaced earlier feedback on the same decision and model "
                                              "(a retry or a corrected score counts once)")
