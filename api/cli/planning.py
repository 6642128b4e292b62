"""`pickwise plan` and `pickwise universe`: batch budget planning and pool construction from a JSONL workload.

Both read lines {"id", "prompt"} (optionally with "quality": {model: p}, which skips the
predictor for that line) into the API's PlanRequest and take the service's path: `plan` is
`PickwiseService.plan`, as POST /v1/plan is, and `universe` decides on the same workload
(`PickwiseService.workload`). Results go to stdout (or --output), the progress bar and a human
summary to stderr. The predictor loads only if some line needs it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from functools import partial

from pydantic import ValidationError

from pickwise.api.cli.interruptible import interruptible
from pickwise.api.cli.options import (
    MODELS_LISTING,
    CliError,
    add_artifact_option,
    add_registry_option,
    capacity_list,
    load_registry_option,
    name_list,
    number,
)
from pickwise.api.cli.output import check_output_path, open_output
from pickwise.api.cli.prompt_file import PromptFileError, PromptRecord, read_prompt_file
from pickwise.api.cli.remote import Server, add_server_option, server_url
from pickwise.api.plan_way_out import plan_way_out
from pickwise.api.schemas import MAX_OUTPUT_TOKENS, PlanPrompt, PlanRequest, PlanResponse, SelectRequest
from pickwise.api.service import PickwiseService, caller_names, check_model_list
from pickwise.registry import RegistrySnapshot
from pickwise.registry.jsonl import listed_problems
from pickwise.selector.batch import SOLVERS
from pickwise.selector.errors import BudgetInfeasible, PlanInfeasible, at_least
from pickwise.selector.types import UniversePlan
from pickwise.selector.universe import build_universe
from pickwise.selector.workload import ModelKeyError, values_by_column


def register(subparsers) -> None:
    plan = subparsers.add_parser(
        "plan", help="assign a model to every prompt of a batch under a budget",
        description="Maximise total predicted quality within --budget, or minimise cost with mean quality "
                    ">= --min-avg-quality (and within --budget if both are given).",
    )
    _workload_options(plan)
    plan.add_argument("--budget", type=number(low=0), help="total USD for the batch")
    plan.add_argument("--min-avg-quality", type=number(low=0, high=1), metavar="Q", help="minimise cost subject to mean quality >= Q")
    plan.add_argument("--min-quality", type=number(low=0, high=1), metavar="P", help="per-prompt quality floor")
    plan.add_argument("--max-latency-ms", type=number(above=0), help="per-prompt latency cap")
    plan.add_argument("--capacity", type=capacity_list, metavar="MODEL=N,...",
                      help="at most N prompts per model (names or aliases, each once)")
    plan.add_argument("--allow-low-confidence", action="store_true",
                      help="let a quality with no evidence behind it meet --min-quality")
    plan.add_argument("--allow-base-models", action="store_true",
                      help="let base (not instruction-tuned) models take prompts read as open-ended")
    plan.add_argument("--solver", choices=SOLVERS, default="auto")
    plan.add_argument("--gap-tolerance", type=number(low=0, high=1), default=1e-4,
                      help="accepted certified relative gap (default 1e-4)")
    plan.add_argument("--time-limit", type=number(above=0), help="seconds for the MILP")
    plan.add_argument("--output", metavar="FILE", help="write plan lines here (default: stdout)")
    add_server_option(plan)
    plan.set_defaults(func=cmd_plan)

    universe = subparsers.add_parser(
        "universe", help="choose the pool of models that serves a workload best",
        description="Choose at most --max-models models (and/or within --max-mean-cost USD per prompt) that "
                    "maximise the mean over prompts of the best pool model's predicted quality.",
    )
    _workload_options(universe)
    universe.add_argument("--max-models", type=number(int, low=1), metavar="K", help="pool size limit")
    universe.add_argument("--max-mean-cost", type=number(low=0), metavar="USD", help="mean cost per prompt when each goes to its pool model")
    universe.add_argument("--solver", choices=("auto", "ilp", "greedy"), default="auto")
    universe.add_argument("--time-limit", type=number(above=0), default=60.0, help="seconds for the MILP (default 60)")
    universe.add_argument("--allow-base-models", action="store_true",
                          help="let base (not instruction-tuned) models take prompts read as open-ended")
    universe.set_defaults(func=cmd_universe)


def _workload_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="FILE", help='JSONL: {"id", "prompt"} or with "quality": {model: p}')
    parser.add_argument("--models", type=name_list, metavar="A,B",
                        help="candidate models, names or aliases (default: every enabled model)")
    parser.add_argument("--exclude", type=name_list, default=[], metavar="A,B", help="models never to use (names or aliases)")
    parser.add_argument("--expected-output-tokens", type=number(int, low=0, high=MAX_OUTPUT_TOKENS),
                        help="override each model's expected answer length")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_registry_option(parser)
    add_artifact_option(parser)


# a request's options (a floor, a cap, ...) found on a line: the line would seem to set its own, and be ignored
_REQUEST_OPTIONS = (set(PlanRequest.model_fields) | set(SelectRequest.model_fields)) - set(PlanPrompt.model_fields)


def _prompt_parser(snapshot: RegistrySnapshot | None):
    """A line's own fields as a PlanPrompt; ValueError names what is wrong (read_prompt_file adds
    the file and line). Model names in "quality" are checked here, so each bad one has its line
    (with --server, no snapshot: the server checks them against its registry)."""
    every = {s.name: j for j, s in enumerate(snapshot.models)} if snapshot is not None else None

    def parse(record: PromptRecord) -> PlanPrompt:
        obj = record.fields
        if options := sorted(_REQUEST_OPTIONS.intersection(obj)):
            raise ValueError(f"{', '.join(repr(k) for k in options)} {'is' if len(options) == 1 else 'are'} not read "
                             "from a line (a line gives id, prompt, quality and prompt_tokens); floors, caps and the "
                             "other constraints apply to the whole batch, as options")
        tokens = obj.get("prompt_tokens")
        if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0):
            raise ValueError("'prompt_tokens' must be a non-negative integer")
        given = obj.get("quality")
        if given is not None:
            if not isinstance(given, dict) or not given:
                raise ValueError("'quality' must be a non-empty object {model: probability}")
            for name, p in given.items():
                if not isinstance(p, (int, float)) or isinstance(p, bool) or not math.isfinite(p) or not 0 <= p <= 1:
                    raise ValueError(f"quality of '{name}' is {p!r}; expected a number in [0, 1]")
            try:
                if snapshot is not None:
                    values_by_column(snapshot, every, given)
            except ModelKeyError as exc:
                raise ValueError(f"{exc} in 'quality'") from None
        if record.prompt is None and (given is None or tokens is None):
            raise ValueError("needs 'prompt' (or both 'quality' and 'prompt_tokens')")
        quality = None if given is None else {name: float(p) for name, p in given.items()}
        try:  # the API's own rules (a blank prompt, an id or a token count too long), here with the line
            return PlanPrompt.model_validate({"id": record.id, "prompt": record.prompt, "quality": quality,
                                              "prompt_tokens": tokens})
        except ValidationError as exc:
            raise ValueError("; ".join(_problem(e) for e in exc.errors())) from None

    return parse


def _problem(error: dict) -> str:
    """One pydantic error of a line as `'field': what is wrong`."""
    message = error["msg"].removeprefix("Value error, ")
    return f"'{'.'.join(str(x) for x in error['loc'])}': {message}" if error["loc"] else message


def _load(args: argparse.Namespace, remote: bool = False,
          **options) -> tuple[PickwiseService | None, PlanRequest, list[str]]:
    """The service over --registry (the predictor loads on demand; None when `remote`), the request
    the input and options make, and where each of its prompts is ('file:line')."""
    names = args.models
    registry = snapshot = None
    if not remote:
        registry = load_registry_option(args.registry, writable=True)
        snapshot = registry.snapshot
        for field, listed in (("models", names), ("exclude", args.exclude)):  # the service's checks, before any work
            check_model_list(snapshot, listed, field, MODELS_LISTING)
    parse, places = _prompt_parser(snapshot), []
    source = "<stdin>" if args.input == "-" else args.input

    def parse_line(record: PromptRecord) -> PlanPrompt:
        prompt = parse(record)
        places.append(f"{source}:{record.line}")
        return prompt

    try:
        prompts = read_prompt_file(args.input, require_prompt=False, parse=parse_line, progress=not args.quiet)
    except PromptFileError as exc:
        raise CliError(str(exc)) from None
    if not prompts:
        raise CliError(f"{args.input}: no prompts")

    def load_predictor():
        from pickwise.predictor import load_predictor

        return load_predictor(args.artifact)

    try:  # validated as POST /v1/plan's body is (min_quality 0 is no floor); the lines are PlanPrompts already
        request = PlanRequest.model_validate(dict(prompts=prompts, models=names, exclude=args.exclude,
                                                  expected_output_tokens=args.expected_output_tokens, **options))
    except ValidationError as exc:
        raise CliError("; ".join(f"--{'.'.join(str(x) for x in e['loc']).replace('_', '-')}: {e['msg']}"
                                 for e in exc.errors())) from None
    service = None if remote else PickwiseService(registry, load_on_demand=load_predictor, models_listing=MODELS_LISTING)
    return service, request, places


def _warn_low_confidence(low_confidence: dict[str, str], quiet: bool) -> None:
    if not quiet:
        for name, why in low_confidence.items():
            print(f"warning: {name}: low-confidence quality ({why})", file=sys.stderr)


def cmd_plan(args: argparse.Namespace) -> int:
    check_output_path("--output", args.output, [("--input", args.input)])
    url = server_url(args)
    service, request, places = _load(
        args, remote=url is not None, budget=args.budget, min_avg_quality=args.min_avg_quality,
        min_quality=args.min_quality, max_latency_ms=args.max_latency_ms, capacity=args.capacity,
        solver=args.solver, allow_low_confidence=args.allow_low_confidence, allow_base_models=args.allow_base_models,
        time_limit=args.time_limit, gap_tolerance=args.gap_tolerance)
    try:
        plan = _plan_remote(url, request, args, places) if url else interruptible(partial(service.plan, request))
    except BudgetInfeasible as exc:
        raise CliError(f"{exc}\nminimum feasible budget: {at_least(exc.min_budget)} USD") from None
    _warn_low_confidence(plan.low_confidence, args.quiet)
    with open_output(args.output or "-") as out:
        for a in plan.assignments:
            out.write(json.dumps({"id": a.id, "model": a.model, "quality": round(a.quality, 6),
                                  "cost_usd": round(a.cost_usd, 10)}) + "\n")  # float noise off: 1e-10 USD
    if not args.quiet:
        predicted = sum(p.quality is None for p in request.prompts)
        print(plan_summary(plan, predicted), file=sys.stderr)
    return 0


def _plan_remote(url: str, request: PlanRequest, args: argparse.Namespace, places: list[str]) -> PlanResponse:
    """POST /v1/plan; a batch over the server's inline limit (its 413 says where to send it) goes to
    POST /v1/plans as a job, polled until it ends. A line the server refuses is named by `places`."""
    server = Server(url, args)
    body = request.model_dump_json(exclude_none=True)
    status, answer = server.call("POST", "/v1/plan", body)
    if status == 413 and isinstance(answer, dict) and answer.get("jobs"):
        status, answer = server.call("POST", answer["jobs"], body)
        if status == 202:
            status, answer = server.wait_for_job(answer)
    if status == 200:
        return PlanResponse.model_validate(answer)
    if isinstance(answer, dict) and answer.get("reason") == "budget" and answer.get("min_budget") is not None:
        raise CliError(f"{server.refusal(status, answer)}\nminimum feasible budget: {at_least(answer['min_budget'])} USD")
    if lines := _refused_lines(answer, places):
        raise CliError(f"the pickwise server at {url} refused input lines:\n{listed_problems(lines)}")
    raise server.refusal(status, answer)


def _refused_lines(answer, places: list[str]) -> list[str]:
    """The server's validation errors that point at a prompt ('prompts', i, ...), as 'file:line: field:
    what' (the server counts prompts from 0, without the file's blank lines)."""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    named = []
    for error in errors if isinstance(errors, list) else []:
        loc = [str(x) for x in error.get("loc", [])] if isinstance(error, dict) else []
        loc = loc[1:] if loc[:1] == ["body"] else loc
        if len(loc) >= 2 and loc[0] == "prompts" and loc[1].isdigit() and int(loc[1]) < len(places):
            field = ".".join(loc[2:])
            named.append(f"{places[int(loc[1])]}: {f'{field}: ' if field else ''}{error.get('msg')}")
    return named


def plan_summary(plan: PlanResponse, predicted: int) -> str:
    n = len(plan.assignment)
    rows = [
        f"prompts: {n} ({predicted} scored by the predictor), candidate models: {len(plan.model_names)}",
        f"objective: {plan.objective}; solver: {plan.solver} ({plan.status}), certified gap {plan.gap:.2e}, {plan.seconds:.3f} s",
        f"total cost: {plan.total_cost:.6g} USD" + (f" of budget {plan.budget:.6g}" if plan.budget is not None else ""),
        f"expected quality: mean {plan.quality_mean:.4f}, sum {plan.quality_sum:.2f}",
        "prompts per model:",
    ]
    used = sorted(((c, name) for name, c in plan.count_per_model.items() if c), reverse=True)
    rows += [f"  {name:<40} {c:>8}  ({c / n:.1%})" for c, name in used]
    for ids, what in ((plan.truncated, "read head+tail only (longer than the encoder's 128 tokens)"),
                      (plan.unreadable, "unreadable (mostly tokens the encoder does not know): qualities are guesses"),
                      (plan.guessed, "assigned on a low-confidence quality (no evidence behind it; "
                                     "--min-quality keeps such qualities out)")):
        if ids:
            rows.append(f"{len(ids)} prompt(s) {what}: {', '.join(ids[:10])}{', ...' if len(ids) > 10 else ''}")
    return "\n".join(rows)


def cmd_universe(args: argparse.Namespace) -> int:
    if args.max_models is None and args.max_mean_cost is None:
        raise CliError("give --max-models and/or --max-mean-cost")
    service, request, _ = _load(args, allow_base_models=args.allow_base_models)
    planned = service.workload(request)
    workload = planned.workload
    _warn_low_confidence(workload.low_confidence, args.quiet)
    called = caller_names(planned.snapshot, request.models, *(p.quality for p in request.prompts))  # as plan answers
    try:
        plan = interruptible(partial(
            build_universe, workload.quality, max_models=args.max_models, cost=workload.cost_usd,
            max_mean_cost=args.max_mean_cost, model_names=[called.get(n, n) for n in workload.names],
            allowed=workload.allowed, solver=args.solver, time_limit=args.time_limit, prompt_ids=workload.ids,
        ))
    except PlanInfeasible as exc:  # say which rule the request can lift, as plan's 409 does
        raise plan_way_out(exc, planned.set_aside) from None
    print(plan.model_dump_json(indent=2))
    if not args.quiet:
        print(universe_summary(plan, len(workload.ids)), file=sys.stderr)
    return 0


def universe_summary(plan: UniversePlan, n: int) -> str:
    rows = [
        f"pool of {len(plan.models)} model(s) over {n} prompts; solver {plan.solver} ({plan.status}), {plan.seconds:.2f} s",
        f"mean best-model quality {plan.mean_best_quality:.4f} (proven bound {plan.bound:.4f}, gap {plan.gap:.2e})",
    ]
    if plan.mean_cost is not None:
        rows.append(f"mean cost per prompt {plan.mean_cost:.6f} USD")
    rows += [f"  {name:<40} serves {share:.1%}" for name, share in sorted(plan.share.items(), key=lambda kv: -kv[1])]
    return "\n".join(rows)
