"""`pickwise serve` (the HTTP service under uvicorn) and `pickwise select` (one decision, in the shell).

`select` builds the same request object as `POST /v1/select` and calls the same
`PickwiseService.select`, so the shell and the API never disagree.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pickwise.api.cli.options import (
    MODELS_LISTING,
    CliError,
    add_artifact_option,
    add_registry_option,
    capability_list,
    load_registry_option,
    name_list,
    number,
)
from pickwise.api.cli.remote import Server, add_server_option, server_url
from pickwise.api.errors import error_body
from pickwise.api.http.settings import ENV_PREFIX
from pickwise.api.way_out import WAY_OUT_FIELDS, no_way_out_clause, way_out_clause
from pickwise.predictor import CPU_ONLY_PRECISIONS, PRECISIONS
from pickwise.registry.schema import CAPABILITIES
from pickwise.selector.errors import InfeasibleSelection
from pickwise.selector.request import HARD_REASONS

OBJECTIVES = ("min_cost", "max_quality", "balanced")
ON_INFEASIBLE = ("error", "cheapest", "best_quality")


class WorkerSettings(BaseSettings):
    """What `serve --workers N` hands each worker process (uvicorn imports the app factory there), as
    PICKWISE_REGISTRY, PICKWISE_ARTIFACT, PICKWISE_FOLLOW_PROMOTIONS, PICKWISE_PRECISION,
    PICKWISE_TORCH_THREADS and PICKWISE_STORE_FILE; the service's limits travel as ServiceSettings' own
    PICKWISE_* variables. The outcome store does not: its URL may hold a password, which a worker's
    environment would show (/proc/PID/environ), so it goes in the file `store_file` names (`handoff_file`)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    registry: Path | None = None  # None: the user's registry over the shipped one
    artifact: Path
    follow_promotions: bool = False  # no --artifact: serve what `artifact promote` names, and follow it
    precision: str = "auto"
    torch_threads: int | None = None
    store_file: Path | None = None  # holds the outcome store's path or URL

    def service_settings(self):
        """The service's settings in this worker: its PICKWISE_* variables, and the store from `store_file`."""
        from pickwise.api.http.settings import ServiceSettings

        if self.store_file is None:
            return ServiceSettings()
        return ServiceSettings(outcome_store=self.store_file.read_text(encoding="utf-8"))

    def environment(self) -> dict[str, str]:
        values = self.model_dump(exclude_none=True)
        return {ENV_PREFIX + name.upper(): str(value) for name, value in values.items()}


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP API (FastAPI + uvicorn)",
                       description="Serve /v1/select, /v1/predict, /v1/plan(s), /v1/feedback, /v1/outcomes/stats, "
                                   "/v1/models, the OpenAI-compatible /openai/v1, /healthz, /readyz and /metrics. "
                                   "Registry writes need PICKWISE_ADMIN_TOKEN in the environment. Without "
                                   "--artifact it serves the promoted artifact and swaps in the next one that "
                                   "`pickwise artifact promote` or `rollback` names, without a restart.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=number(int, low=1, high=65535), default=8000, help="TCP port (default 8000)")
    p.add_argument("--workers", type=number(int, low=1), default=1,
                   help="uvicorn worker processes (each loads its own predictor; default 1)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--store", metavar="PATH|URL", default=None,
                   help="the outcome store POST /v1/feedback writes to and decisions are kept in: a SQLite file "
                        "(default $PICKWISE_HOME/outcomes.sqlite) or a postgresql:// URL that replicas share")
    p.add_argument("--torch-threads", type=number(int, low=1), default=None, metavar="N",
                   help="intra-op threads of the predictor (default: every CPU for a bf16 or int8 encoder, "
                        "CPUs - 1 for fp32, so HTTP handling keeps a core)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="how the encoder runs: fp32; bf16 autocast, about 2x fp32 on CPUs with bf16 instructions "
                        "at a negligible accuracy cost; int8 dynamic quantisation (CPU only), faster still at a small "
                        "accuracy cost; onnx-int8 (CPU only): the int8 encoder under ONNX Runtime, ~2x bf16 at batch 1 "
                        "(exported on first use, ~15 s, and cached in .cache/onnx); auto (default): onnx-int8 on a CPU "
                        "(bf16 or fp32 if its export fails), fp32 on CUDA (figures: docs/performance.md)")
    p.add_argument("--max-batch", type=int, default=None, metavar="N",
                   help=f"most prompts of concurrent requests encoded in one predictor call (default {_default('max_batch')})")
    p.add_argument("--max-wait-ms", type=float, default=None, metavar="MS",
                   help="longest a prompt waits for others to join its batch (default "
                        f"{_default('max_wait_ms'):g}: continuous batching, prompts arriving while the encoder runs "
                        "form the next batch)")
    p.add_argument("--max-queue", type=int, default=None, metavar="N",
                   help=f"most prompts waiting for the encoder; a select beyond it gets 429 with Retry-After "
                        f"at once instead of queueing (default {_default('max_queue')})")
    p.add_argument("--encoder-lanes", type=int, default=None, metavar="N",
                   help="most micro-batches encoded at once, each on one thread (default: as many as the encoder "
                        "can run side by side: onnx-int8 its thread count, torch encoders 1)")
    p.add_argument("--gateway-defaults", metavar="JSON", default=None,
                   help="the gateway's routing policy: a JSON object of fields of the `pickwise` object (e.g. "
                        "'{\"min_quality\": 0.6, \"on_infeasible\": \"best_quality\"}'), which a request's own "
                        "fields override one by one (default: PICKWISE_GATEWAY_DEFAULTS, else min_cost, no floor)")
    p.add_argument("--gateway-limits", metavar="JSON", default=None,
                   help="bounds no gateway call may pass: a JSON object of max_cost_usd, max_latency_ms, "
                        "min_quality, models, exclude, requires, allow_low_confidence/allow_base_models false and "
                        "max_attempts, which a request may tighten but not loosen, nor a fallback break (default: "
                        "PICKWISE_GATEWAY_LIMITS, else none)")
    add_registry_option(p)
    add_artifact_option(p)
    p.set_defaults(func=run_serve)

    p = sub.add_parser("select", help="choose the model (or model set) for one prompt")
    p.add_argument("prompt", help="the prompt text ('-' reads it from stdin)")
    p.add_argument("--min-quality", type=float, metavar="Q", help="floor on predicted quality, in [0, 1]")
    p.add_argument("--max-latency-ms", type=float, metavar="MS")
    p.add_argument("--max-cost-usd", type=float, metavar="USD")
    p.add_argument("--objective", choices=OBJECTIVES, default="min_cost")
    p.add_argument("--willingness-to-pay", type=float, metavar="USD",
                   help="for --objective balanced: USD you would pay for +1.0 quality")
    p.add_argument("--max-models", type=int, default=1, metavar="K", help="call up to K (<= 3) models in parallel")
    p.add_argument("--models", type=name_list, metavar="A,B", help="allow-list (names or aliases)")
    p.add_argument("--exclude", type=name_list, default=[], metavar="A,B", help="deny-list (names or aliases)")
    p.add_argument("--expected-output-tokens", type=int, metavar="N")
    p.add_argument("--on-infeasible", choices=ON_INFEASIBLE, default="error")
    p.add_argument("--allow-low-confidence", action="store_true",
                   help="let a quality with no evidence behind it (~ in the table) meet --min-quality on its own")
    p.add_argument("--allow-base-models", action="store_true",
                   help="let a base (not instruction-tuned) model answer a prompt read as open-ended")
    p.add_argument("--requires", type=capability_list, default=[], metavar="C,D",
                   help=f"what the call needs beyond text, of {', '.join(CAPABILITIES)}: only models whose "
                        "registry entry declares each are chosen")
    p.add_argument("--json", action="store_true", help="print the decision as JSON (the API's response body)")
    add_server_option(p)
    add_registry_option(p)
    add_artifact_option(p)
    p.set_defaults(func=run_select)


# ---- serve -------------------------------------------------------------------------------------
def _default(field: str):
    from pickwise.api.http.settings import ServiceSettings

    return ServiceSettings.model_fields[field].default


def batching_settings(args: argparse.Namespace) -> dict:
    """The micro-batching and queue options that were given, checked by the same model the service uses."""
    from pickwise.api.http.settings import ServiceSettings

    options = {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "max_queue": args.max_queue,
               "encoder_lanes": args.encoder_lanes, "gateway_defaults": getattr(args, "gateway_defaults", None),
               "gateway_limits": getattr(args, "gateway_limits", None)}
    given = {k: v for k, v in options.items() if v is not None}
    if getattr(args, "store", None):
        from pickwise.registry.sql import store_target

        given["outcome_store"] = store_target(args.store)
    try:
        ServiceSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{_option_name(str(e['loc'][0]), given)}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise CliError(problems) from None
    return given


def _option_name(field: str, given: dict) -> str:
    """The option a setting came from: its flag, or the environment variable when no flag set it (every
    setting can come from the environment, most have no flag)."""
    if field not in given:
        return ENV_PREFIX + field.upper()
    return "--store" if field == "outcome_store" else "--" + field.replace("_", "-")


def _check_paths(args: argparse.Namespace, batching: dict) -> tuple[Path, Path]:
    from pickwise.predictor.promotion import serving_artifact_dir

    snapshot = load_registry_option(args.registry)  # fail before binding the port, with every problem listed
    _check_policy_names(batching, snapshot)
    artifact = Path(args.artifact) if args.artifact else serving_artifact_dir()
    if not artifact.is_dir():
        raise CliError(f"predictor artifact {artifact} does not exist; train one with "
                       "`pickwise train --out DIR` and pass --artifact DIR")
    return (Path(args.registry) if args.registry else None), artifact


def _check_policy_names(batching: dict, snapshot) -> None:
    """The routing policy's model names, against the registry serve starts with: a typo stops it here,
    so a name missing later was removed while serving (`gateway.route.for_registry`)."""
    from pickwise.api.gateway.limits import check_defaults
    from pickwise.api.gateway.options import check_names
    from pickwise.api.gateway.route import check_served
    from pickwise.api.http.settings import ServiceSettings

    settings = ServiceSettings(**batching)
    for field, names in (("gateway_defaults", settings.gateway_options),
                         ("gateway_limits", settings.limits.model_dump(include={"models", "exclude"}))):
        try:
            check_names(names, snapshot)
        except ValueError as exc:
            raise CliError(f"{_option_name(field, batching)}: {exc}") from None
    try:
        check_defaults(settings.gateway_options, settings.limits, snapshot, _option_name("gateway_limits", batching))
    except ValueError as exc:
        raise CliError(f"{_option_name('gateway_defaults', batching)}: {exc}") from None
    for field, models in (("gateway_limits", settings.limits.models),
                          ("gateway_defaults", settings.gateway_options.get("models"))):
        try:
            check_served(models, snapshot)
        except ValueError as exc:
            raise CliError(f"{_option_name(field, batching)}: {exc}") from None


def _check_store(target: str | None) -> None:
    """Reach a Postgres store (creating its tables) before binding the port: a wrong URL or a server
    down fails the start with its reason, not the first feedback. A file is made by its first write."""
    from pickwise.registry.outcomes import OutcomeStore
    from pickwise.registry.sql import is_url

    if is_url(target):
        OutcomeStore(target).close()  # an OutcomeError names the URL without its password


def artifact_loader(precision: str = "auto"):
    """load(directory): the loader the app runs in the background (on predictor.inference.default_device)."""
    def load(directory: Path):
        from pickwise.predictor.inference import load_predictor

        return load_predictor(directory, precision=precision)

    return load


def predictor_loader(artifact: Path, precision: str = "auto"):
    """Zero-argument loader of `artifact` the app runs in the background."""
    load = artifact_loader(precision)
    return lambda: load(artifact)


def default_torch_threads(precision: str, cpus: int | None = None) -> int:
    """Intra-op threads when --torch-threads is not given, for the precision the encoder will run in.

    fp32: CPUs - 1, leaving a core for the event loop (with every core in a torch thread, OpenMP
    barriers stall whenever the HTTP thread runs). bf16 and the quantised precisions (int8,
    onnx-int8): every CPU, since their encoder calls are short enough for the HTTP thread to run between.
    """
    cpus = cpus or os.cpu_count() or 2
    return cpus if precision == "bf16" or precision in CPU_ONLY_PRECISIONS else max(1, cpus - 1)


def set_torch_threads(requested: int | None, precision: str = "fp32") -> int:
    """Set the predictor's intra-op threads: `requested`, else the default for the precision
    `predictor_loader` will run the encoder in ("auto" resolved as it will be)."""
    import torch

    from pickwise.predictor.inference import default_device, resolve_precision

    threads = requested or default_torch_threads(resolve_precision(precision, default_device(precision)))
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def handoff_file(text: str) -> Iterator[Path]:
    """A file holding `text` that only this user can read (mode 0600, in a fresh 0700 folder), removed
    with its folder when the block ends: how `serve --workers` hands its workers a secret without
    putting it in their environment or command line."""
    folder = Path(tempfile.mkdtemp(prefix="pickwise-serve-"))
    try:
        path = folder / "store"
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
            fh.write(text)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def app_from_env():
    """uvicorn factory for --workers > 1 (each worker process builds its own app from the environment)."""
    from pickwise.api.http.app import create_app
    from pickwise.api.http.timeouts import HeaderTimeoutProtocol

    worker = WorkerSettings()
    settings = worker.service_settings()
    HeaderTimeoutProtocol.header_timeout_s = settings.header_timeout_s  # this worker's uvicorn uses that class
    set_torch_threads(worker.torch_threads, worker.precision)
    return create_app(worker.registry, settings=settings,
                      predictor=predictor_loader(worker.artifact, worker.precision),
                      follow_promotions=artifact_loader(worker.precision) if worker.follow_promotions else None)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pickwise.api.http.app import log_config

    batching = batching_settings(args)
    registry, artifact = _check_paths(args, batching)
    from pickwise.api.http.settings import ServiceSettings

    _check_store(ServiceSettings(**batching).outcome_store)  # --store, else PICKWISE_OUTCOME_STORE
    follow = args.artifact is None  # an artifact named on the command line serves as long as the server runs
    if args.workers == 1:
        from pickwise.api.http.app import create_app

        set_torch_threads(args.torch_threads, args.precision)
        settings = ServiceSettings(**batching)
        app = create_app(registry, settings=settings, predictor=predictor_loader(artifact, args.precision),
                         follow_promotions=artifact_loader(args.precision) if follow else None)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, log_config=log_config(args.log_level),
                    **settings.uvicorn_options())
    else:
        settings = ServiceSettings(**batching)
        with contextlib.ExitStack() as stack:
            store_file = None if settings.outcome_store is None else stack.enter_context(
                handoff_file(settings.outcome_store))
            worker = WorkerSettings(registry=registry, artifact=artifact, follow_promotions=follow,
                                    precision=args.precision, torch_threads=args.torch_threads, store_file=store_file)
            os.environ.pop(ENV_PREFIX + "OUTCOME_STORE", None)  # the workers inherit the environment: not the URL
            os.environ.update({**worker.environment(), **settings.environment()})
            uvicorn.run("pickwise.api.cli.serving:app_from_env", factory=True, host=args.host, port=args.port,
                        workers=args.workers, log_level=args.log_level, log_config=log_config(args.log_level),
                        **settings.uvicorn_options(args.workers))
    return 0


# ---- select ------------------------------------------------------------------------------------
def build_request(args: argparse.Namespace, prompt: str):
    """The API's SelectRequest from the options; pydantic errors become messages naming the option."""
    from pickwise.api.schemas import SelectRequest

    fields = {
        "prompt": prompt, "min_quality": args.min_quality, "max_latency_ms": args.max_latency_ms,
        "max_cost_usd": args.max_cost_usd, "objective": args.objective, "willingness_to_pay": args.willingness_to_pay,
        "max_models": args.max_models, "models": args.models, "exclude": args.exclude,
        "expected_output_tokens": args.expected_output_tokens, "on_infeasible": args.on_infeasible,
        "allow_low_confidence": args.allow_low_confidence, "allow_base_models": args.allow_base_models,
        "requires": args.requires,
    }
    try:
        return SelectRequest.model_validate(fields)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(x) for x in err["loc"]]
            where = ("--" + loc[0].replace("_", "-")) if loc and loc[0] != "prompt" else ("PROMPT" if loc else "options")
            message = err["msg"].removeprefix("Value error, ")
            if not loc:  # a check across fields names them itself: as the options the user typed
                names = "|".join(sorted((f for f in fields if f != "prompt"), key=len, reverse=True))
                message = re.sub(rf"\b({names})\b", lambda m: "--" + m.group(1).replace("_", "-"), message)
            lines.append(f"{where}: {message}")
        raise CliError("invalid options:\n  " + "\n  ".join(lines)) from None


def _fmt_cost(usd: float) -> str:
    return f"{usd:.6f}" if usd < 1 else f"{usd:.2f}"


def _evidence(c) -> str:
    """How much the model's results cover prompts like this one: the share, and the results behind it."""
    if c.support is None:
        return "-"
    if not c.evidence_rows or c.evidence_rows < 1:
        return "none"
    return f"{c.support:.0%}, {c.evidence_rows:,.0f} rows"


def _task_label(task: str) -> str:
    """'llmrouter_dcrouter_9models/trivia_qa' -> 'trivia_qa (llmrouter_dcrouter)'."""
    table, _, name = task.partition("/")
    return f"{name} ({re.sub(r'(_subset.*)?_[0-9]+models$', '', table)})" if name else task


def format_decision(result) -> str:
    """The decision as text: a summary line, then every candidate (chosen first) with its figures."""
    chosen = " + ".join(result.chosen)
    lines = [
        f"chosen: {chosen}   quality {result.quality:.3f}   cost ${_fmt_cost(result.cost_usd)}   "
        f"latency {result.latency_ms:,.0f} ms   ({result.objective}, {result.method})",
    ]
    if result.fallback:
        lines.append(f"fallback '{result.fallback}': nothing met the constraints; this choice breaks "
                     f"{', '.join(result.violates) or 'no soft constraint'}")
    for name, why in result.low_confidence.items():
        lines.append(f"low confidence: {name}: {why}")
    lines.append(f"prompt tokens {result.prompt_tokens}{' (predictor read head+tail only)' if result.truncated else ''}; "
                 f"registry {result.registry_version}; predictor {result.predictor_version}")
    for name, why in result.left_out.items():
        lines.append(f"left out: {name}: {why}")
    if result.unreadable:
        lines.append("unreadable prompt: most of its tokens are unknown to the predictor's encoder (emoji, or a "
                     "script outside its vocabulary); every quality is a guess")
    if result.reads_as and result.open_ended < 0.5:
        lines.append("reads as: " + ", ".join(f"{_task_label(t)} {share:.0%}" for t, share in result.reads_as.items()))
    if result.open_ended >= 0.5:
        lines.append("open-ended prompt: no priced table measures prompts like this; qualities rank models by "
                     "general ability")
    order = sorted(result.candidates, key=lambda c: (not c.chosen, bool(c.excluded_by), c.cost_usd, c.name))
    header = ("", "MODEL", "QUALITY", "EVIDENCE", "COST USD", "LATENCY ms", "EXCLUDED BY")
    rows = [(("*" if c.chosen else "") + ("~" if c.low_confidence else ""), c.name, f"{c.quality:.3f}", _evidence(c),
             _fmt_cost(c.cost_usd), f"{c.latency_ms:,.0f}", ", ".join(c.excluded_by)) for c in order]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 4, 5}
    lines.append("")
    for r in [header, *rows]:
        lines.append("  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip())
    lines.append("(* chosen, ~ low-confidence quality: no results on prompts like this, or scored from a prior; "
                 "EVIDENCE: share of the prompt the model has results for, and how many)")
    return "\n".join(lines)


def format_infeasible(body: dict) -> str:
    """An infeasible select's error body (`error_body`, or a server's 409) as text: the sentence, the
    way out as options, then what blocks each model."""
    blocking = body.get("blocking") or {}
    detail = body.get("detail", "no model satisfies the constraints")
    ways, together = body.get("way_out") or {}, body.get("way_out_together") or {}
    option = lambda k, v: "--" + k.replace("_", "-") + ("" if v is True else f" {v:g}")  # noqa: E731
    # the sentence ends with the way out in HTTP field names: said once, as this command's options
    said = way_out_clause(ways, together)
    lines = [detail]
    if said:
        way = ("way out: " + " or ".join(option(k, v) for k, v in ways.items()) if ways else
               "way out, both together: " + " ".join(option(k, v) for k, v in together.items()))
        lines = [detail.removesuffix(said) + "; " + way] if detail.endswith(said) else [detail, way]
    elif detail.endswith(no_way_out_clause()):
        lines = [detail.removesuffix(no_way_out_clause())
                 + no_way_out_clause(["--" + field.replace("_", "-") for field in WAY_OUT_FIELDS])]
    # models the caller left out of the allow-list or denied are not worth a line each
    listed = {n: why for n, why in blocking.items() if not {"not in allow-list", "deny-list"} & set(why)}
    width = max((len(n) for n in listed), default=0)
    lines.append("what blocks each model:" if len(listed) == len(blocking) else "what blocks each model asked for:")
    lines += [f"  {name.ljust(width)}  {', '.join(why) or 'no feasible set'}" for name, why in listed.items()]
    if len(listed) < len(blocking):
        lines.append(f"  ({len(blocking) - len(listed)} more not in the allow-list or denied; --json lists them)")
    if any("low confidence" in why for why in listed.values()):
        lines.append("(low confidence: no results on prompts like this; --allow-low-confidence lets such a "
                     "quality meet the floor)")
    if any("base model, open-ended prompt" in why for why in listed.values()):
        lines.append("(base model, open-ended prompt: not instruction-tuned; --allow-base-models lets it answer)")
    if any(r.startswith("lacks ") for why in listed.values() for r in why):
        lines.append("(lacks C: the call needs C and the model's registry entry does not declare it in `capabilities`)")
    # a fallback only overrides soft constraints: offer it only where some model is held by those alone
    if any(not any(r in HARD_REASONS for r in why) for why in listed.values()):
        lines.append("relax one of these constraints, or pass --on-infeasible cheapest|best_quality")
    else:
        lines.append("every model is ruled out by a hard constraint (allow- or deny-list, disabled, context "
                     "window, base model, a capability it lacks): --on-infeasible cannot override those")
    return "\n".join(lines)


def run_select(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    request = build_request(args, prompt)
    url = server_url(args)
    result = _select_remote(url, request, args) if url else _select_local(args, request)
    print(result.model_dump_json(indent=2) if args.json else format_decision(result))
    return 0


def _infeasible(body: dict, as_json: bool) -> CliError:
    if as_json:
        print(json.dumps(body, indent=2))
    return CliError(format_infeasible(body), code=1)


def _select_local(args: argparse.Namespace, request):
    from pickwise.api.service import PickwiseService
    from pickwise.predictor.artifact import ArtifactError
    from pickwise.predictor.inference import load_predictor

    registry = load_registry_option(args.registry, writable=True)
    try:
        predictor = load_predictor(args.artifact)
    except (ArtifactError, FileNotFoundError, OSError) as exc:
        raise CliError(f"cannot load the predictor: {exc}") from None
    try:
        return PickwiseService(registry, predictor, models_listing=MODELS_LISTING).select(request)
    except InfeasibleSelection as exc:
        raise _infeasible(error_body(exc), args.json) from None


def _select_remote(url: str, request, args: argparse.Namespace):
    from pickwise.api.schemas import SelectResponse

    server = Server(url, args)
    status, body = server.call("POST", "/v1/select", request.model_dump_json(exclude_none=True))
    if status == 200:
        return SelectResponse.model_validate(body)
    if status == 409 and isinstance(body, dict) and body.get("error") == "infeasible":
        raise _infeasible(body, args.json)
    raise server.refusal(status, body)
