"""`pickwise eval`: routing figures of the predictor and the baselines on held-out rows of routing tables."""
from __future__ import annotations

import argparse
import json
import sys

from pickwise.api.cli.options import (
    CliError,
    add_artifact_option,
    add_precision_option,
    add_registry_option,
    load_registry_option,
    load_tables_option,
    number,
)
from pickwise.api.cli.output import check_output_path, open_output


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score the predictor and baselines on held-out rows (capture, c2m, AIQ, calibration)",
        description=(
            "Score the predictor on the rows of each table it did not train on, next to the prior and "
            "TF-IDF baselines trained here on the artifact's training rows, with every figure of ../shared/METRICS.md."
        ),
    )
    p.add_argument("--data", nargs="+", required=True, metavar="TABLE",
                   help="routing table(s): wide parquet, or outcomes in the long format (JSONL, CSV, parquet)")
    add_artifact_option(p)
    add_precision_option(p)
    add_registry_option(p)
    p.add_argument("--plot", metavar="FILE.png", help="write the cost-quality curves of every table to this PNG")
    p.add_argument("--json", metavar="FILE", help="write the full reports (curves included) as JSON (- for stdout, the table then on stderr)")
    p.add_argument("--bootstrap", type=number(int, low=0), default=200, metavar="N",
                   help="paired bootstrap resamples over prompts (0 = none; default 200)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--embedding-baseline", action="store_true",
                   help="also run the frozen-MiniLM + logistic regression baseline (slow on CPU; cached)")
    p.add_argument("--cost-estimate", choices=("registry", "table"), default="registry",
                   help="where the routers' estimated cost comes from: registry prices (default) or "
                        "prices fitted to the table's training rows")
    p.set_defaults(func=run)


def _load_snapshot(args: argparse.Namespace):
    if args.cost_estimate != "registry":
        return None
    return load_registry_option(args.registry)


def run(args: argparse.Namespace) -> int:
    from pickwise.predictor.evaluate import evaluate_table, format_report

    tables = [("--data", path) for path in args.data]
    if args.plot == "-":  # '-' is stdout elsewhere; here it became a file named '-.png', written after the work
        raise CliError("--plot -: the plot is a PNG (or another image) file; give its file name")
    check_output_path("--plot", args.plot, tables)
    check_output_path("--json", args.json, tables)
    if args.plot:
        from pickwise.predictor.plots import plot_path

        try:
            plot_path(args.plot)
        except ValueError as exc:
            raise CliError(f"--plot {exc}") from None
    tables = load_tables_option(args.data)
    snapshot = _load_snapshot(args)
    from pickwise.predictor.inference import load_predictor

    try:
        predictor = load_predictor(args.artifact, precision=args.precision)
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: an ONNX export that failed
        raise CliError(f"--artifact {args.artifact or '(default)'}: cannot load the predictor ({exc})") from None
    for table in tables:  # before any work: a model the artifact never trained on has no vector to score
        untrained = [m for m in table.model_names if predictor.trained_index(m) is None]
        if untrained:
            raise CliError(f"--data {table.path}: model(s) {', '.join(map(repr, untrained))} are not in the predictor "
                           "artifact; eval scores the models it was trained on (drop their columns, or train with "
                           "the table)")
    baselines = ("prior", "tfidf") + (("embed",) if args.embedding_baseline else ())
    reports = []
    for table in tables:
        print(f"evaluating {table.name} ...", file=sys.stderr)
        try:
            reports.append(evaluate_table(table, predictor, snapshot, baselines=baselines,
                                          bootstrap=args.bootstrap, seed=args.seed, progress=True))
        except ValueError as exc:
            raise CliError(str(exc)) from None
    # `--json -` puts the JSON on stdout, so the table goes to stderr: stdout stays one JSON document
    print(format_report(reports), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        with open_output(args.json) as out:  # whole or not at all, and a CliError, not a traceback, if it fails
            out.write(json.dumps([r.model_dump(mode="json") for r in reports], indent=1) + "\n")
        if args.json != "-":
            print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        from pickwise.predictor.plots import plot_reports

        print(f"wrote {plot_reports(reports, args.plot)}", file=sys.stderr)
    return 0
