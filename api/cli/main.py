"""`pickwise` entry point: builds the argument parser from the command modules and runs one."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from pickwise.api.cli.options import CliError, option_for
from pickwise.api.errors import RequestFieldError, error_code
from pickwise.errors import PickwiseError

# Exit codes of domain errors by code (pickwise.api.errors): 1 when the request was valid but
# nothing can satisfy it, as `grep` exits 1 on no match; 2 for every other refusal.
EXIT_CODES = {"infeasible": 1}


# Sub-command modules under pickwise.api.cli, each with `register(subparsers)`.
COMMAND_MODULES = (
    "models",     # models list|show|validate|add|remove
    "predicting",  # train, predict
    "evaluate",   # eval
    "planning",   # plan, universe
    "serving",    # serve, select
    "probe",      # probe export|score
    "outcomes",   # outcomes import|export|stats, fit, artifact promote|rollback|status
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pickwise",
        description="Pick the cheapest LLM that answers each prompt well.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"pickwise.api.cli.{name}").register(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub-)command `args` ran, `pickwise models show` say: an error it reports
    comes with that command's usage line, not the top level's."""
    while True:
        chosen = next((action.choices.get(getattr(args, action.dest, None)) for action in parser._actions
                       if isinstance(action, argparse._SubParsersAction)), None)
        if chosen is None:
            return parser
        parser = chosen


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = _command_parser(parser, args)
    if extra:  # argparse's own parse_args reports these with the top-level usage, as `pickwise: error:`
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    name = command.prog  # how errors name the command: `pickwise models show`
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe must surface here, not at interpreter exit
        return code
    except CliError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.code
    except RequestFieldError as exc:  # a field the service refused, named as the option it came from
        print(f"{name}: error: {option_for(args, exc.field)}: {exc.message}", file=sys.stderr)
        return 2
    except PickwiseError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return EXIT_CODES.get(error_code(exc), 2)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`pickwise models list | head`): stop quietly like any Unix filter.
        # Python's documented recipe: point stdout's descriptor at /dev/null so the final flush at
        # exit cannot raise again (a captured stdout without a descriptor has nothing to flush).
        try:
            stdout_fd = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            stdout_fd = None
        if stdout_fd is not None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout_fd)
            os.close(devnull)
        return 141  # 128 + SIGPIPE, what a C filter stopped by a closed pipe reports


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
