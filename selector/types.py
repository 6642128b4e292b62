"""pydantic types that cross the selector's boundary (API, CLI, JSON files)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from pickwise.registry.schema import Capability

Objective = Literal["min_cost", "max_quality", "balanced"]
OnInfeasible = Literal["error", "cheapest", "best_quality"]


def _no_floor_at_zero(value: float | None) -> float | None:
    """A floor of 0 asks for nothing, so it is no floor: low-confidence qualities are not held back by it."""
    return None if value == 0 else value


QualityFloor = Annotated[float | None, Field(ge=0.0, le=1.0), AfterValidator(_no_floor_at_zero)]


class SelectionConstraints(BaseModel):
    """What one request asks of the chosen model (or parallel set of models).

    Strict types: a JSON `true` is not a quality floor of 1.0, nor "0.5" a number (lax pydantic took both).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    min_quality: QualityFloor = Field(None, description="floor on predicted (set) quality (0: none)")
    max_latency_ms: float | None = Field(None, gt=0.0, description="cap on latency (a set's latency is its slowest member)")
    max_cost_usd: float | None = Field(None, ge=0.0, description="cap on estimated cost (a set's cost is the sum)")
    objective: Objective = "min_cost"
    willingness_to_pay: float | None = Field(
        None, ge=0.0,
        description="for 'balanced': USD the caller would pay for +1.0 quality; maximises "
                    "willingness_to_pay * quality - cost (i.e. quality - cost / willingness_to_pay)",
    )
    max_models: int = Field(1, ge=1, le=3, description="call up to this many models in parallel")
    models: list[str] | None = Field(None, min_length=1,  # an empty allow-list could only ever be infeasible
                                     description="allow-list (names or aliases); leave it out for every model")
    exclude: list[str] = Field(default_factory=list, description="deny-list (names or aliases)")
    expected_output_tokens: int | None = Field(None, ge=0, description="override each model's expected output length")
    on_infeasible: OnInfeasible = "error"
    allow_low_confidence: bool = Field(
        False, description="let a low-confidence quality (scored with no results on prompts like this one, or from a "
                           "prior) meet min_quality on its own; by default only qualities with evidence count towards it")
    allow_base_models: bool = Field(
        False, description="let a base (not instruction-tuned) model answer a prompt read as open-ended (chat, writing, "
                           "advice); by default such prompts go only to instruction-tuned models")
    requires: list[Capability] = Field(
        default_factory=list, description="what the call needs of the model beyond text: tools (function calling), "
                                          "vision (image inputs), audio (audio inputs), json_schema (structured "
                                          "outputs); only models whose registry entry declares each are chosen")

    @model_validator(mode="after")
    def _lambda_iff_balanced(self) -> SelectionConstraints:
        if self.objective == "balanced" and self.willingness_to_pay is None:
            raise ValueError("objective 'balanced' needs willingness_to_pay (USD per unit of quality)")
        if self.objective != "balanced" and self.willingness_to_pay is not None:  # it would be silently ignored
            raise ValueError(f"willingness_to_pay applies only to objective 'balanced' (the objective is "
                             f"'{self.objective}')")
        return self


class Candidate(BaseModel):
    """One model's figures for one prompt, as the selector sees them."""

    name: str
    quality: float = Field(ge=0.0, le=1.0)
    cost_usd: float = Field(ge=0.0)
    latency_ms: float = Field(ge=0.0)
    fits_context: bool = Field(True, description="prompt plus answer (or the request's whole cap) fit the context window")
    fits_output: bool = Field(True, description="the answer (or the request's whole cap) fits max_output_tokens")
    output_room: int | None = Field(None, description="the longest answer the model takes after this prompt "
                                                      "(None: not known), for the way out of an answer too long")
    enabled: bool = True
    aliases: list[str] = Field(default_factory=list)
    low_confidence: str | None = Field(None, description="why the quality has no evidence behind it, if it has none")
    support: float | None = Field(None, description="share of the prompt that reads as kinds of prompts the model has "
                                                    "results on (None: not a trained model)")
    output_tokens: int | None = Field(None, description="the answer length its cost and latency assume (cl100k_base; "
                                                        "one answer's, where a call asks for several)")
    evidence_rows: float | None = Field(None, description="training results behind the quality, weighted by how "
                                                          "much the prompt reads as each kind")
    open_ended_base: bool = Field(False, description="a base (not instruction-tuned) model and a prompt read as "
                                                     "open-ended: left out unless allow_base_models")
    capabilities: list[str] = Field(default_factory=list, description="what its registry entry declares it takes "
                                                                      "beyond text (SelectionConstraints.requires)")

    @field_validator("quality", "cost_usd", "latency_ms")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return v


class CandidateReport(BaseModel):
    """A candidate's figures in a decision, with the constraints that ruled it out (if any)."""

    name: str
    quality: float
    cost_usd: float
    latency_ms: float
    fits_context: bool
    fits_output: bool = True
    low_confidence: str | None = None
    support: float | None = None
    evidence_rows: float | None = None
    output_tokens: int | None = None
    excluded_by: list[str] = Field(default_factory=list)
    chosen: bool = False


class Decision(BaseModel):
    """The chosen model or parallel set, with its predicted figures and every candidate's.

    Set quality is the probability that at least one member answers well. Errors of LLMs on the
    same prompt are positively correlated, so a share `set_rho` of failures is taken as common-mode
    (pickwise.predictor.scale.set_quality, fitted on held-out rows); 0 is 1 - prod(1 - q_m).
    """

    chosen: list[str]
    quality: float
    cost_usd: float
    latency_ms: float
    objective: Objective
    objective_value: float
    method: Literal["scan", "enumeration", "ilp"]
    fallback: OnInfeasible | None = None
    violates: list[str] = Field(default_factory=list, description="constraints a fallback choice breaks")
    low_confidence: dict[str, str] = Field(default_factory=dict)
    candidates: list[CandidateReport]


class BatchPlan(BaseModel):
    """A model per prompt, its totals and how close to optimal it is proven to be."""

    objective: Literal["max_quality", "min_cost"]
    assignment: list[int] = Field(description="index into model_names for each prompt")
    model_names: list[str]
    total_cost: float
    quality_sum: float
    quality_mean: float
    count_per_model: dict[str, int]
    budget: float | None = None
    min_avg_quality: float | None = None
    solver: str
    bound: float = Field(description="proven bound on the objective (max quality sum, or min total cost)")
    gap: float = Field(description="certified relative gap |bound - value| / |bound|")
    status: Literal["optimal", "within_gap", "time_limit", "empty"]
    seconds: float
    notes: list[str] = Field(default_factory=list)

    def assigned_models(self) -> list[str]:
        return [self.model_names[j] for j in self.assignment]


class UniversePlan(BaseModel):
    """A pool of models chosen to maximise the expected best-model quality on a workload sample."""

    models: list[str] = Field(description="the pool: at most K models, each serving at least one prompt")
    mean_best_quality: float = Field(description="mean over prompts of the pool's best predicted quality")
    mean_cost: float | None = Field(None, description="mean per-prompt cost when each prompt goes to its pool model")
    share: dict[str, float] = Field(description="fraction of prompts each pool model serves")
    bound: float = Field(description="proven upper bound on mean_best_quality for any admissible pool (with "
                                     "a mean-cost budget, of routing that may split a prompt: can exceed the best)")
    gap: float = Field(description="(bound - mean_best_quality) / bound")
    solver: str
    status: str = Field(description="optimal (gap <= 1e-6), within_gap (the gap is what is proven) or time_limit")
    seconds: float
