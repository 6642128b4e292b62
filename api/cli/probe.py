"""`pickwise probe export|score|run|check`: register a new model from its answers to the probe set.

The workflow for a model pickwise never trained on:
1. `pickwise probe export --output probe.jsonl` writes the probe prompts;
2. the user runs them through the new model, writing `{"prompt_id", "response"}` lines;
3. `pickwise probe score --responses responses.jsonl --output results.csv` grades the
   multiple-choice answers against the references (prompts without one are skipped, unless the
   line gives the answer's `output_tokens`: then it is a length-only row);
   (`pickwise probe run --model NAME` does 1-3 for a model with an endpoint, and resumes if stopped);
4. the model's YAML says `probe: {results: results.csv}`; `pickwise probe check model.yaml`
   validates it before `pickwise models add model.yaml`.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys

from pickwise.api.cli.options import CliError, add_registry_option, load_registry_option, read_text_argument
from pickwise.api.cli.options import number as number_type
from pickwise.api.cli.output import check_output_path, open_output
from pickwise.registry import RegistryError, RegistryIssue
from pickwise.registry.jsonl import json_object_lines, listed_problems, read_input
from pickwise.registry.loader import parse_registry_text
from pickwise.registry.probes.grading import grade_response
from pickwise.registry.probes.probe_set import ProbeEntry, load_probe_set, probe_index, probe_set_version
from pickwise.registry.probes.results import MIN_PROBE_RESULTS, parse_output_tokens, parse_probe, write_results

EXPORT_FIELDS = ("prompt_id", "prompt", "choices")


def _export_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    return "csv" if args.output.lower().endswith(".csv") else "jsonl"


def cmd_export(args: argparse.Namespace) -> int:
    entries = [e for e in load_probe_set() if e.gradable or not args.gradable_only]
    fmt = _export_format(args)
    with open_output(args.output) as out:
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({k: getattr(e, k) or "" for k in EXPORT_FIELDS} for e in entries)
        else:
            for e in entries:
                out.write(json.dumps({k: getattr(e, k) for k in EXPORT_FIELDS}, ensure_ascii=False) + "\n")
    gradable = sum(e.gradable for e in entries)
    print(f"wrote {len(entries)} probe prompts ({fmt}) to {args.output}; {gradable} of them can be graded by "
          f"`pickwise probe score` (multiple-choice with a reference); probe set version {probe_set_version()}",
          file=sys.stderr)
    return 0


def read_responses(path: str, index: dict[str, ProbeEntry]) -> list[tuple[ProbeEntry, str, int | None]]:
    """(entry, response, output tokens or None) per line of a responses JSONL file; every bad line
    reported at once."""
    try:
        raw = read_input(path)
    except OSError as exc:
        raise CliError(f"{path}: cannot read responses ({exc.strerror})") from None
    pairs, errors, seen = [], [], {}
    shape = '{"prompt_id": ..., "response": ...}'
    for number, record in json_object_lines(raw, lambda n: f"line {n}", errors, shape):
        where = f"line {number}"
        pid, response = record.get("prompt_id"), record.get("response")
        if not isinstance(pid, str):
            errors.append(f'{where}: field "prompt_id": expected a string, got {pid!r:.60}')
        elif pid not in index:
            errors.append(f"{where}: prompt_id {pid!r:.60} is not in the probe set (version {probe_set_version()})")
        elif pid in seen:
            errors.append(f"{where}: duplicate prompt_id {pid!r} (first on line {seen[pid]})")
        elif not isinstance(response, str):
            errors.append(f'{where}: field "response": expected a string, got {response!r:.60}')
        else:
            try:
                tokens = parse_output_tokens(record.get("output_tokens"))
            except ValueError as exc:
                errors.append(f"{where}: {exc}")
                continue
            seen[pid] = number
            pairs.append((index[pid], response, tokens))
    if errors:
        raise CliError(f"{path}: bad response lines:\n" + listed_problems(errors))
    if not pairs:
        raise CliError(f"{path}: no responses (expected one JSON object per line)")
    return pairs


def cmd_score(args: argparse.Namespace) -> int:
    check_output_path("--output", args.output, [("--responses", args.responses)])
    pairs = read_responses(args.responses, probe_index())
    rows = [(entry.prompt_id, grade_response(entry, response), tokens) for entry, response, tokens in pairs]
    scored = [(pid, score) for pid, score, _ in rows if score is not None]
    skipped = len(pairs) - len(scored)
    if not scored:
        raise CliError(f"{args.responses}: none of the {len(pairs)} responses is to a gradable prompt "
                       "(multiple-choice with a reference answer); nothing written")
    with open_output(args.output) as out:
        write_results(out, [r for r in rows if r[1] is not None or r[2] is not None])
    accuracy = sum(s for _, s in scored) / len(scored)
    target = "the results" if args.output == "-" else args.output
    print(f"scored {len(scored)} responses (accuracy {accuracy:.3f}); skipped {skipped} without a reference answer"
          f" (grade those yourself and add them to {target} if you can)"
          + (f"; {lengths} answer lengths (output_tokens) kept" if (lengths := sum(t is not None for *_, t in rows))
             else "")
          + ("" if args.output == "-" else f"; wrote {args.output}"), file=sys.stderr)
    if len(scored) < MIN_PROBE_RESULTS:
        print(f"warning: a registry needs at least {MIN_PROBE_RESULTS} probe results; these are {len(scored)}",
              file=sys.stderr)
    return 0


def _similar_to_issues(entries, registry_option: str | None) -> list[RegistryIssue]:
    """`similar_to` must name a model of the registry the YAML is meant for (or another model of this file)."""
    wanted = [e for e in entries if e.spec.probe is not None and e.spec.probe.similar_to]
    if not wanted:
        return []
    snapshot = load_registry_option(registry_option)
    registry = snapshot.directory
    local = {n for e in entries for n in e.spec.all_names()}
    return [
        RegistryIssue(f"similar_to '{e.spec.probe.similar_to}' is not a model of this file or of registry {registry}",
                      file=e.path, model=e.spec.name, field="probe.similar_to")
        for e in wanted if e.spec.probe.similar_to not in snapshot and e.spec.probe.similar_to not in local
    ]


def _describe(spec, evidence) -> str:
    probe = spec.probe
    if evidence is not None:
        scores, lengths = evidence.scores, evidence.lengths
        tables = sorted({probe_index()[p].table for p in scores})
        return (f"{len(scores)} probe results, mean score {sum(scores.values()) / len(scores):.3f} "
                f"(tables: {', '.join(tables)}); "
                + (f"{len(lengths)} answer lengths" if lengths else "no answer lengths"))
    if probe.similar_to:
        return f"no probe results: prior from similar_to '{probe.similar_to}' (low-confidence)"
    return f"no probe results: prior from benchmark_score {probe.benchmark_score} (low-confidence)"


def _trained_names() -> dict[str, str]:
    """{name or alias: trained model} of the serving predictor, read from its meta.json (no model loaded);
    empty when it cannot be read (the check of the YAML does not depend on it)."""
    from pickwise.predictor.artifact import ArtifactError, read_meta
    from pickwise.predictor.promotion import serving_artifact_dir

    try:
        meta = read_meta(serving_artifact_dir())
    except (ArtifactError, OSError):
        return {}
    names = {name: name for name in meta.get("model_names", [])}
    names.update({alias: name for alias, name in meta.get("aliases", {}).items() if name in names})
    return names


def _trained_note(spec, trained: dict[str, str], evidence) -> str | None:
    """A model named (or aliased) as a trained one is scored from that trained vector, whatever its
    probe section says (`pickwise fit` on its outcomes refines it); its probe answer lengths still count."""
    hit = next((trained[n] for n in spec.all_names() if n in trained), None)
    if hit is None:
        return None
    whose = "its trained vector" if hit == spec.name else f"the trained vector of '{hit}'"
    note = f"scored from {whose} in the serving predictor"
    if evidence is not None:
        note += ", not from these probe results" + ("; their answer lengths set its length estimates"
                                                    if evidence.lengths else "")
    return note


def cmd_check(args: argparse.Namespace) -> int:
    text, path = read_text_argument(args.file)
    issues: list[RegistryIssue] = []
    entries = [e for e in parse_registry_text(text, path, issues) if e.spec is not None]
    trained = _trained_names()
    report: list[str] = []
    for entry in entries:
        if entry.spec.probe is None:
            note = _trained_note(entry.spec, trained, None)
            report.append(f"{entry.spec.name}: no probe section: "
                          + (note or "scored as an average model (low-confidence)"))
            continue
        try:
            evidence = parse_probe(entry.spec.probe, path, entry.spec.name, entry.spec.max_output_tokens)
        except RegistryError as exc:
            issues.extend(exc.errors)
            continue
        note = _trained_note(entry.spec, trained, evidence)
        if note and evidence is None:
            report.append(f"{entry.spec.name}: {note} (its probe priors are not used)")
        else:
            report.append(f"{entry.spec.name}: {_describe(entry.spec, evidence)}" + (f"; {note}" if note else ""))
    issues.extend(_similar_to_issues(entries, args.registry))
    if issues:
        what = "probe section invalid" if all((i.field or "").startswith("probe") for i in issues) else "invalid"
        raise CliError(f"{path}: {what}:\n" + "\n".join(str(i) for i in issues))
    print("\n".join(report))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pickwise.api.cli import probe_run
    from pickwise.registry import UnknownModelError

    snapshot = load_registry_option(args.registry)
    try:
        spec = snapshot.get(args.model)
    except UnknownModelError:
        raise CliError(f"no model {args.model!r} in registry {snapshot.directory}") from None
    entries = [e for e in load_probe_set() if e.gradable or not args.gradable_only]
    yaml_file = snapshot.source_file(spec.name)
    if snapshot.source(spec.name) == "shipped":  # never write into the installed package: into the user's registry
        yaml_file = snapshot.directory / yaml_file.name
    return probe_run.run(spec, yaml_file, entries, concurrency=args.concurrency,
                         max_tokens=args.max_tokens, progress=not args.no_progress)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("probe", help="export the probe set, grade a new model's answers, check its YAML")
    sub = parser.add_subparsers(dest="probe_command", metavar="SUBCOMMAND")
    sub.required = True

    p = sub.add_parser("export", help="write the probe prompts to run through a new model")
    p.add_argument("--output", required=True, metavar="FILE", help="output file ('-' for stdout)")
    p.add_argument("--format", choices=("jsonl", "csv"), default=None,
                   help="output format (default: csv for a .csv file name, else jsonl)")
    p.add_argument("--gradable-only", action="store_true",
                   help="only the prompts `probe score` can grade (multiple-choice with a reference answer)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("score", help="grade a new model's answers to the probe prompts; write prompt_id,score CSV")
    p.add_argument("--responses", required=True, metavar="FILE",
                   help='JSONL, one {"prompt_id": ..., "response": ...} per line (\'-\' for stdin)')
    p.add_argument("--output", required=True, metavar="FILE", help="CSV to write ('-' for stdout)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("run", help="send the probe set to a model's endpoint, grade the answers, write the results "
                                   "next to its YAML (resumable)")
    p.add_argument("--model", required=True, metavar="NAME", help="the model (name or alias); it needs an endpoint")
    add_registry_option(p)
    p.add_argument("--concurrency", type=number_type(int, low=1, high=256), default=8,
                   help="calls in flight at once (default 8)")
    p.add_argument("--max-tokens", type=number_type(int, low=1), default=512, help="max_tokens of each call (default 512)")
    p.add_argument("--gradable-only", action="store_true",
                   help="only the prompts that can be graded (multiple-choice with a reference answer)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate the probe section of a model YAML file against the probe set")
    p.add_argument("file", metavar="FILE", help="model YAML file (one model or a list; - for stdin)")
    add_registry_option(p)
    p.set_defaults(func=cmd_check)
