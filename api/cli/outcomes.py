"""`pickwise outcomes import|export|stats`, `pickwise fit` and `pickwise artifact promote|rollback|status`:
learn model vectors from observed outcomes and promote the result unless held-out outcomes show it worse.

The store is `--store PATH|URL` (a SQLite file, default $PICKWISE_HOME/outcomes.sqlite, or a Postgres
URL); docs/outcomes.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from pickwise.api.cli.options import (
    CliError,
    add_registry_option,
    load_registry_option,
    number,
)
from pickwise.api.cli.output import check_output_path


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="PATH|URL", default=None,
                        help="the outcome store: a SQLite file (default $PICKWISE_HOME/outcomes.sqlite, "
                             "~/.pickwise/outcomes.sqlite) or postgresql://user:pass@host:port/db, which "
                             "replicas on several hosts can share (pip install 'pickwise[postgres]')")


def open_store(option: str | None, *, must_exist: bool = False):
    from pickwise.registry.outcomes import OutcomeStore, default_store_path, store_exists

    target = option or default_store_path()
    if must_exist and not store_exists(target):
        raise CliError(f"outcome store {target} does not exist; `pickwise outcomes import FILE` creates it")
    return OutcomeStore(target)


def register(sub) -> None:
    p = sub.add_parser("outcomes", help="store observed outcomes: import, export, stats")
    osub = p.add_subparsers(dest="outcomes_command", metavar="ACTION")
    osub.required = True

    q = osub.add_parser("import", help="add outcomes from a JSONL, CSV or parquet file (long format)")
    q.add_argument("file", help="rows of {prompt, model (name or alias), score in [0, 1], optional cost_usd, "
                                "latency_ms, output_tokens, timestamp, decision_id, tags}")
    add_store_option(q)
    add_registry_option(q)
    q.add_argument("--skip-bad", action="store_true", help="store the good rows of a file with bad ones "
                                                          "(default: store nothing, name every bad row)")
    q.add_argument("--duplicates", choices=("refuse", "skip", "add"), default="refuse",
                   help="rows identical to stored ones (prompt, model, score, timestamp, decision; a file imported "
                        "before, or one that grew since), or a file whose content was imported before: refuse the "
                        "file (default), skip those rows (that file), or add them again")
    q.add_argument("--hash-prompts", action="store_true",
                   help="keep each prompt's sha256 and its vector from --artifact's encoder, not its text")
    q.add_argument("--artifact", metavar="DIR", default=None,
                   help="the encoder for --hash-prompts (default: the serving artifact)")
    q.set_defaults(func=cmd_import)

    q = osub.add_parser("export", help="write every outcome in the import format (by --output's suffix)")
    add_store_option(q)
    q.add_argument("--output", required=True, metavar="FILE", help=".jsonl, .csv or .parquet")
    q.set_defaults(func=cmd_export)

    q = osub.add_parser("stats", help="counts and cost per model and per day")
    add_store_option(q)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_stats)

    p = sub.add_parser("fit", help="refit model vectors to the stored outcomes; writes a candidate artifact")
    add_store_option(p)
    add_registry_option(p)
    p.add_argument("--artifact", metavar="BASE", default=None,
                   help="the base artifact whose encoder is kept (default: the serving one, the promoted "
                        "artifact if any, else the shipped one; each model with outcomes in the store starts from "
                        "what it had before any refit, so they are counted once)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the refitted artifact goes")
    p.add_argument("--holdout", type=number(float, low=0.0, high=0.9), default=0.2, metavar="SHARE",
                   help="share of prompts, the newest, held out to compare the candidate with its base "
                        "(default 0.2; 0 fits on everything and leaves `artifact promote` nothing to judge)")
    p.add_argument("--trust-trained", type=number(float, above=0.0), default=10.0, metavar="K",
                   help="how many population priors' worth of evidence a trained vector stands for (default 10)")
    p.add_argument("--trust-new", type=number(float, above=0.0), default=None, metavar="K",
                   help="the population prior's weight on a model without a trained vector, from 50 of its "
                        "outcomes on (default 0.03, chosen in docs/decisions/outcome-prior.md; fewer: 1)")
    p.add_argument("--json", action="store_true", help="print the fit's report as JSON")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("artifact", help="which artifact serves: promote, rollback, status")
    asub = p.add_subparsers(dest="artifact_command", metavar="ACTION")
    asub.required = True
    q = asub.add_parser("promote", help="serve DIR by default unless its held-out outcomes show it worse than its base "
                                         "(the whole 95%% paired bootstrap interval of Brier or capture on the worse side)")
    q.add_argument("dir")
    q.add_argument("--force", action="store_true", help="promote even if shown worse, or without figures")
    q.set_defaults(func=cmd_promote)
    q = asub.add_parser("rollback", help="serve the previously promoted artifact again")
    q.set_defaults(func=cmd_rollback)
    q = asub.add_parser("status", help="the serving artifact and the promotion history")
    q.set_defaults(func=cmd_artifact_status)


def cmd_import(args: argparse.Namespace) -> int:
    from pickwise.registry import UnknownModelError
    from pickwise.registry.outcomes import OutcomeError, parse_file

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{args.file}: no such file")
    snapshot = load_registry_option(args.registry)

    def resolve(name: str) -> str:
        try:
            return snapshot.get(name).name
        except UnknownModelError:
            raise KeyError(snapshot.did_you_mean(name)) from None

    try:
        good, bad = parse_file(path, resolve, lambda name: snapshot.get(name).max_output_tokens)
    except OutcomeError as exc:
        raise CliError(str(exc)) from None
    if bad and not args.skip_bad:
        raise CliError(f"{path}: {len(bad)} bad row(s), nothing stored (--skip-bad stores the {len(good)} good ones):\n"
                       + "\n".join(f"  {path}: {b}" for b in _first(bad)))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    store = open_store(args.store)
    with store:
        before = store.imported(digest) if args.duplicates != "add" else None
        if before is not None:
            name, rows, when = before
            stored = f"{rows:,} row{'' if rows == 1 else 's'} stored"
            said = (f"{path}: the same content was imported at {when} (as {name}, {stored}); a row without a "
                    "timestamp would be stored again")
            if args.duplicates == "refuse":
                raise CliError(f"{said}; nothing stored; --duplicates add stores the file again")
            print(f"pickwise outcomes import: {said}; nothing stored (--duplicates skip)", file=sys.stderr)
            return 0
        repeated = store.stored_already(good) if args.duplicates != "add" else []
        if repeated and args.duplicates == "refuse":
            raise CliError(f"{path}: {len(repeated)} of its {len(good)} rows are in the store already (identical prompt, "
                           f"model, score, timestamp and decision: imported before?), nothing stored; "
                           "--duplicates skip stores only the others, --duplicates add stores them again")
        for b in _first(bad):
            print(f"pickwise outcomes import: skipped {path}: {b}", file=sys.stderr)
        if repeated:
            dropped = set(repeated)
            good = [o for i, o in enumerate(good) if i not in dropped]
        if args.hash_prompts:
            good = _hashed(good, args.artifact)
        added = store.add(good, from_file=(digest, str(path)))  # one transaction: all of the good rows, or none
    skipped = [f"{len(bad)} bad rows"] * bool(bad) + [f"{len(repeated)} stored already"] * bool(repeated)
    print(f"stored {added:,} outcome{'' if added == 1 else 's'} from {path} in {store.location}" + (f" ({', '.join(skipped)} skipped)" if skipped else ""),
          file=sys.stderr)
    return 0


def _first(bad: list[str], most: int = 50) -> list[str]:
    """A file's bad rows as listed: the first `most`, then how many more (a huge file's would flood)."""
    return bad[:most] + ([f"... and {len(bad) - most:,} more"] if len(bad) > most else [])


def _hashed(outcomes: list, artifact: str | None) -> list:
    """The outcomes with their text replaced by its hash and the encoder's vector."""
    import dataclasses

    from pickwise.predictor.inference import load_predictor

    predictor = load_predictor(artifact, "cpu")
    texts = [o.prompt for o in outcomes if o.prompt is not None]
    unique = list(dict.fromkeys(texts))
    u, _ = predictor.prompt_vectors(unique)
    vector = {t: tuple(float(x) for x in row.astype("float32")) for t, row in zip(unique, u)}
    return [dataclasses.replace(o, prompt=None, prompt_vector=vector[o.prompt], vector_encoder=predictor.encoder_version)
            if o.prompt is not None else o for o in outcomes]


def cmd_export(args: argparse.Namespace) -> int:
    from pickwise.registry.outcomes import OutcomeError, write_records

    check_output_path("--output", args.output)
    with open_store(args.store, must_exist=True) as store:
        try:
            n = write_records(store.outcomes(), args.output)
        except OutcomeError as exc:
            raise CliError(str(exc)) from None
    print(f"wrote {n} outcomes to {args.output}", file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with open_store(args.store, must_exist=True) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    n, prompts = stats["outcomes"], stats["prompts"]
    print(f"{n:,} outcome{'' if n == 1 else 's'} on {prompts:,} prompt{'' if prompts == 1 else 's'} in {stats['store']}"
          + (f", {stats['first']} .. {stats['last']}" if stats["outcomes"] else ""))
    hashed = stats["hashed_prompts"]
    if hashed["rows"]:
        print(f"{hashed['rows']:,} keep only the prompt's hash ({hashed['with_vector']:,} with its vector)")
    if stats["per_model"]:
        width = max(len(r["model"]) for r in stats["per_model"])
        print(f"\n{'MODEL'.ljust(width)}  OUTCOMES   PROMPTS  MEAN SCORE      COST USD    COSTED")
        for r in stats["per_model"]:
            print(f"{r['model'].ljust(width)}  {r['outcomes']:>8,}  {r['prompts']:>8,}  {r['mean_score']:>10.3f}  "
                  f"{_usd(r['cost_usd'])}  {r['costed']:>8,}")
        print("\nDAY (UTC)   OUTCOMES      COST USD    COSTED")
        for r in stats["per_day"]:
            print(f"{r['day']}  {r['outcomes']:>8,}  {_usd(r['cost_usd'])}  {r['costed']:>8,}")
        if any(r["costed"] < r["outcomes"] for r in stats["per_model"]):
            print("\nCOST USD sums the outcomes that record a cost (COSTED of them)")
    return 0


def _usd(value: float | None) -> str:
    return f"{'-':>12}" if value is None else f"{value:>12.6f}"


def cmd_fit(args: argparse.Namespace) -> int:
    from pickwise.predictor.artifact import ArtifactError, check_artifact_target
    from pickwise.predictor.inference import load_predictor
    from pickwise.predictor.promotion import serving_artifact_dir
    from pickwise.predictor.refit import refit

    try:
        check_artifact_target(args.out)
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    try:  # what serves: the candidate is judged against it, and promoting it replaces it
        base = Path(args.artifact) if args.artifact else serving_artifact_dir()
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    if base.resolve() == Path(args.out).resolve():
        raise CliError("--out must differ from the base artifact")
    snapshot = load_registry_option(args.registry)
    with open_store(args.store, must_exist=True) as store:
        predictor = load_predictor(base, "cpu")
        report = refit(predictor, snapshot, store, args.out, holdout=args.holdout, trust_trained=args.trust_trained,
                       **({} if args.trust_new is None else {"trust_new": args.trust_new}),
                       progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(fitted_line(report, args.out))
    print(_figures_line(report["holdout"]))
    print(_lengths_line(report))
    return 0


def fitted_line(report: dict, out) -> str:
    """What was fitted from how many outcomes and, where the store holds rows the fit could not use
    (models not in the registry, hashed prompts without this encoder's vector), how many."""
    used = report["outcomes"]
    line = (f"fitted {len(report['models'])} models from {used['fit']:,} outcomes ({used['held_out']:,} held out, "
            f"{used['prompts']:,} prompts, {report['time_range'][0]} .. {report['time_range'][1]}) "
            f"in {report['seconds']['total']:.1f} s; wrote {out}")
    skipped = used["skipped"]
    left_out = [f"{skipped['unknown_model']:,} outcomes of models not in the registry"] * bool(skipped["unknown_model"]) + [
        f"{skipped['hashed_without_vector']:,} keeping only the prompt's hash without this encoder's vector"] * bool(
        skipped["hashed_without_vector"])
    return line + (f"; left out: {', '.join(left_out)}" if left_out else "")


def _lengths_line(report: dict) -> str:
    """What the length refit did and, on held-out outcomes with lengths, how close base and candidate come."""
    lengths = report.get("lengths", {})
    if lengths.get("skipped"):
        return f"lengths: {lengths['skipped']}"
    used = lengths.get("outcomes_with_tokens", {}).get("used", 0)
    if not used:
        return "lengths: no outcome records output_tokens: length vectors unchanged"
    line = f"lengths: refitted {len(lengths['models'])} models from {lengths['outcomes_with_tokens']['fit']:,} outcomes"
    held_out = _held_out_lengths(report["holdout"].get("lengths", {}))
    return line + (f"; {held_out}" if held_out else "")


def _held_out_lengths(h: dict) -> str:
    """How close base and candidate come to the held-out answer lengths, with the gate's verdict; '' without any."""
    if not h.get("rows"):
        return ""
    text = (f"held-out {h['rows']:,}: median |log2 error| {_base_to_candidate(h['median_abs_log2_error'], 3)}, "
            f"within 2x {_base_to_candidate(h['within_2x'], 3)}")
    if h.get("mean_abs_log2_error"):
        text += f"; mean |log2 error| {_base_to_candidate(h['mean_abs_log2_error'], 3, lower_is_better=True)}"
    return text


def _base_to_candidate(figure: dict, digits: int, lower_is_better: bool | None = None) -> str:
    """'base x -> candidate y', then, for a figure the gate judges (`lower_is_better` given), its interval."""
    text = f"base {figure['base']:.{digits}f} -> candidate {figure['candidate']:.{digits}f}"
    return text if lower_is_better is None else text + _difference_text(figure, digits, lower_is_better)


def _difference_text(figure: dict, digits: int, lower_is_better: bool) -> str:
    """' (difference ±x, 95% interval [lo, hi]: verdict)' for a held-out figure with an interval, else ''."""
    from pickwise.predictor.promotion import verdict

    d = figure.get("difference") or {}
    if not d.get("n"):
        return ""
    return (f" (difference {d['point']:+.{digits}f}, 95% interval [{d['lo']:+.{digits}f}, {d['hi']:+.{digits}f}]: "
            f"{verdict(figure, lower_is_better)})")


def _figures_line(h: dict) -> str:
    """The held-out figures, each with candidate − base, its paired bootstrap interval and the verdict."""
    if not h.get("rows"):
        return "held-out: none (nothing for `artifact promote` to judge)"
    line = (f"held-out {h['rows']:,} outcomes on {h.get('prompts', 0):,} prompts: "
            f"Brier {_base_to_candidate(h['brier'], 4, lower_is_better=True)}")
    if h.get("capture"):
        c = h["capture"]
        line += f"\ncapture on {c['prompts']:,} prompts: {_base_to_candidate(c, 4, lower_is_better=False)}"
    elif h.get("capture_skipped"):
        line += f"\ncapture: not judged ({h['capture_skipped']})"
    return line


def cmd_promote(args: argparse.Namespace) -> int:
    from pickwise.predictor.promotion import promote

    record = promote(args.dir, force=args.force)
    if record["action"] == "unchanged":
        print(f"{args.dir} (version {record['version']}) already serves ({record['path']}): nothing promoted")
        return 0
    print(f"promoted {args.dir} (version {record['version']}, copied to {record['path']})"
          + (" despite: " + "; ".join(record["worse"]) if record["worse"] else ""))
    print(_figures_line(record["figures"]))
    if record["judged_against"] and record["judged_against"] != record["replaced"]:
        print(f"note: these figures compare it with {record['judged_against']}, the artifact it was fitted on; "
              f"{record['replaced']}, which served until now, was not compared (`artifact rollback` returns to it)")
    if record["figures"].get("rows"):  # the gate also judged the answer lengths, where outcomes recorded them
        held_out = _held_out_lengths(record["figures"].get("lengths", {}))
        print(f"lengths: {held_out or 'no held-out outcome records output_tokens (not judged)'}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from pickwise.predictor.promotion import rollback

    record = rollback()
    to = record["to"]
    print(f"rolled back from {record['from']['version']} to {'the shipped artifact ' if to.get('shipped') else ''}"
          f"{to['version']} ({to['path']})")
    return 0


def cmd_artifact_status(args: argparse.Namespace) -> int:
    from pickwise.predictor.artifact import ArtifactError
    from pickwise.predictor.promotion import read_pointer, serving_artifact_dir

    pointer = read_pointer()
    try:
        serving, problem = str(serving_artifact_dir()), None
    except ArtifactError as exc:  # the promoted artifact is gone: show the pointer, then say so
        serving, problem = None, exc
    print(json.dumps({"serving": serving, **pointer}, indent=2))
    if problem is not None:
        raise CliError(str(problem))
    return 0
