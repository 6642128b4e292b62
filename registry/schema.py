"""The registry's data model: what one model entry in a registry YAML file may say.

Every model is frozen and forbids unknown keys, so a typo in a YAML file
(`input_per_milion`) is an error naming the key instead of a silently ignored
field that leaves a price at its default.
"""
from __future__ import annotations

from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from pickwise.registry.names import normal_name

# Upper bounds are sanity limits, far above any real offering (the dearest list prices are a few
# hundred USD per million tokens): they stop a typo or a hostile POST from turning every cost
# or latency estimate into inf/NaN, which would make each request's selection fail.
MAX_PRICE_PER_MILLION = 100_000.0
MAX_PER_REQUEST_FEE = 1_000.0
MAX_TTFT_MS = 3_600_000.0
MIN_TOKENS_PER_S = 1e-3
MAX_TOKENS_PER_S = 1e7
MAX_TOKENS = 1_000_000_000
MAX_NAME_LENGTH = 200
MAX_TIMEOUT_S = 3_600.0
MAX_URL_LENGTH = 2_000
# Free text and lists are capped: every reload re-reads them, and a request that writes one waits for it.
MAX_NOTES_LENGTH = 10_000
MAX_LIST_ITEMS = 100  # aliases, tags
MAX_PROBE_ROWS = 10_000  # inline probe results (the probe set has a few hundred prompts)
MAX_PATH_LENGTH = 1_000


def _printable_name(value: str) -> str:
    value = normal_name(value)  # one spelling per name: fullwidth and decomposed forms are the plain one
    if not value.isprintable():
        raise ValueError("must contain only printable characters (no control or invisible characters)")
    if value != value.strip():
        raise ValueError("must not start or end with white space")
    return value


ModelName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_printable_name)]


# The tag that marks a base (not instruction-tuned) model: it continues text rather than following
# instructions, so chat, writing and advice prompts do not go to it unless a request allows it.
BASE_MODEL_TAG = "base-model"

# What a chat request may need of the model beyond text in, text out, in OpenAI's terms: tool (function)
# calling, image inputs, audio inputs, structured outputs (`response_format` of type json_schema) and
# file inputs (a `file` content part: a PDF, say).
# A model serves such a request only if its entry declares the capability: an endpoint that lacks one
# refuses the request, or worse, answers it while ignoring the tools or the image.
Capability = Literal["tools", "vision", "audio", "json_schema", "files"]
CAPABILITIES: tuple[str, ...] = get_args(Capability)


class _Strict(BaseModel):
    """Base for every registry model: immutable, unknown keys rejected.

    Numbers and flags are `strict=True` fields: pydantic would otherwise read `true` as a price of
    1.0, "300" as a latency and "no" as `enabled: false`, and a typo would become a silent value.
    (Model-wide strict mode would also refuse YAML lists for the tuple fields.)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class Pricing(_Strict):
    """USD prices. Per-million-token prices because that is how providers publish them."""

    input_per_million: float = Field(ge=0, le=MAX_PRICE_PER_MILLION, strict=True)
    output_per_million: float = Field(ge=0, le=MAX_PRICE_PER_MILLION, strict=True)
    per_request: float = Field(default=0.0, ge=0, le=MAX_PER_REQUEST_FEE, strict=True)


class Latency(_Strict):
    """Time to first token and decode speed; `estimated` marks our guesses vs. measurements."""

    ttft_ms: float = Field(ge=0, le=MAX_TTFT_MS, strict=True)
    output_tokens_per_s: float = Field(ge=MIN_TOKENS_PER_S, le=MAX_TOKENS_PER_S, strict=True)
    estimated: bool = Field(default=False, strict=True)


class ProbeResult(_Strict):
    """One answer of the model to one prompt of the probe set: its score, its length, or both.

    A row without a score (an answer no grader could score) still says how long the model's
    answers are; the quality fit reads only scored rows, the length fit every row with a length.
    """

    prompt_id: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    score: float | None = Field(default=None, ge=0, le=1, strict=True)
    output_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS, strict=True)

    @model_validator(mode="after")
    def _score_or_length(self) -> ProbeResult:
        if self.score is None and self.output_tokens is None:
            raise ValueError("a result needs a score, output_tokens or both")
        return self


class Probe(_Strict):
    """Cold-start evidence about a model the predictor was not trained on.

    `results` (a CSV/JSONL path relative to the YAML file, or inline rows) is the
    strongest evidence; `benchmark_score` and `similar_to` are fallback priors.
    """

    results: str | list[ProbeResult] | None = None
    benchmark_score: float | None = Field(default=None, ge=0, le=1, strict=True)
    similar_to: ModelName | None = None

    @field_validator("results")
    @classmethod
    def _results_size(cls, value: str | list[ProbeResult] | None) -> str | list[ProbeResult] | None:
        # checked here, not per union member: pydantic would name the members in every other error
        if isinstance(value, str) and len(value) > MAX_PATH_LENGTH:
            raise ValueError(f"a results path has at most {MAX_PATH_LENGTH:,} characters")
        if isinstance(value, list) and len(value) > MAX_PROBE_ROWS:
            raise ValueError(f"at most {MAX_PROBE_ROWS:,} inline results")
        return value


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. https://api.example.com/v1")
    # credentials belong in the environment (api_key_env), never in a file that is committed and
    # shown by GET /v1/models; a query string would also break appending /chat/completions
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials (user:password@); name an environment variable in api_key_env")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment (the gateway appends /chat/completions)")
    return value.rstrip("/")


class Endpoint(_Strict):
    """Where a model is served: any OpenAI-compatible server. Its key is read from the environment
    variable `api_key_env` when a call is made; no key is ever written in a registry file."""

    base_url: Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH), AfterValidator(_base_url)]
    model: ModelName | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=MAX_NAME_LENGTH)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, strict=True)


class ModelSpec(_Strict):
    """One routable model: identity, prices, speed, limits and optional probe evidence."""

    name: ModelName
    provider: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    aliases: tuple[ModelName, ...] = Field(default=(), max_length=MAX_LIST_ITEMS)
    pricing: Pricing
    latency: Latency
    context_window: int = Field(gt=0, le=MAX_TOKENS, strict=True)
    max_output_tokens: int = Field(gt=0, le=MAX_TOKENS, strict=True)
    expected_output_tokens: int = Field(gt=0, le=MAX_TOKENS, strict=True)
    tags: tuple[Annotated[str, Field(max_length=MAX_NAME_LENGTH)], ...] = Field(default=(), max_length=MAX_LIST_ITEMS)
    capabilities: tuple[Capability, ...] = Field(default=(), max_length=len(CAPABILITIES))
    enabled: bool = Field(default=True, strict=True)
    probe: Probe | None = None
    endpoint: Endpoint | None = None
    notes: str | None = Field(default=None, max_length=MAX_NOTES_LENGTH)

    # Each value alone is valid but together they cannot be served. Checked on the later field (the
    # earlier one is validated by then), so the error names that field and the loader its line.
    @field_validator("max_output_tokens")
    @classmethod
    def _output_fits_the_context(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("context_window")
        if window is not None and value > window:
            raise ValueError(f"{value} exceeds context_window ({window})")
        return value

    @field_validator("expected_output_tokens")
    @classmethod
    def _expected_fits_the_output(cls, value: int, info: ValidationInfo) -> int:
        most = info.data.get("max_output_tokens")
        if most is not None and value > most:
            raise ValueError(f"{value} exceeds max_output_tokens ({most})")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases_are_distinct(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("name") in value or len(set(value)) != len(value):
            raise ValueError("aliases must be distinct and differ from the model's name")
        return value

    @field_validator("capabilities")
    @classmethod
    def _capabilities_are_distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("each capability at most once")
        return value

    def all_names(self) -> tuple[str, ...]:
        """The name followed by every alias: all the strings that select this model."""
        return (self.name, *self.aliases)

    @property
    def base_model(self) -> bool:
        """A pretrained-only checkpoint (tag BASE_MODEL_TAG): not routed open-ended prompts by default."""
        return BASE_MODEL_TAG in self.tags

    @property
    def upstream_model(self) -> str | None:
        """The name its endpoint knows it by (default: the registry name); None without an endpoint."""
        if self.endpoint is None:
            return None
        return self.endpoint.model or self.name
