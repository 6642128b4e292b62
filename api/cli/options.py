"""Options and helpers the `pickwise` sub-commands share: range-checked numbers, --registry,
--artifact, --precision and --data, and CliError, a usage error the CLI prints without a traceback."""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from pickwise.errors import PickwiseError
from pickwise.predictor import PRECISIONS  # a constant: predictor/__init__ imports no torch
from pickwise.registry.schema import CAPABILITIES

# what the CLI's errors about unknown model names point to (the HTTP API says GET /v1/models)
MODELS_LISTING = "`pickwise models list`"


class CliError(PickwiseError):
    """A user-facing error: printed without a traceback, exit code 2 (or `.code`)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def option_for(args: argparse.Namespace | None, field: str) -> str:
    """A request field as the user named it: `--max-cost-usd` for `max_cost_usd` (and for `capacity.NAME`,
    `--capacity`) where the command has that option, else the field's own dotted path."""
    head = field.split(".")[0]
    return f"--{head.replace('_', '-')}" if args is not None and hasattr(args, head) else field


def number(kind: type = float, *, low: float | None = None, high: float | None = None, above: float | None = None):
    """An argparse `type=` that parses `kind` and checks its range, so a bad value is a usage error
    naming the option ("argument --batch-size: must be an integer >= 1, got 0") before any work
    starts, instead of a traceback or a silently odd result later."""
    noun = "an integer" if kind is int else "a finite number"
    bounds = [f">= {low:g}" if low is not None else "", f"> {above:g}" if above is not None else "",
              f"<= {high:g}" if high is not None else ""]
    wanted = " ".join([noun, " and ".join(b for b in bounds if b)]).strip()

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if (kind is float and not math.isfinite(value)) or (low is not None and value < low) \
                or (above is not None and value <= above) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    return parse


def name_list(text: str) -> list[str]:
    """An argparse `type=` for a comma-separated list of model names (`--models`, `--exclude`): spaces
    around a name are dropped; an empty item (a stray comma, an empty variable) is an error rather than
    skipped, and a list naming nothing is one too, so a lost name never silently widens or empties a list."""
    names = [item.strip() for item in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError(f"names no model, got {text!r} (leave the option out instead)")
    if "" in names:
        raise argparse.ArgumentTypeError(f"empty name at item {names.index('') + 1} of {text!r} (a stray comma?)")
    return names


def capability_list(text: str) -> list[str]:
    """An argparse `type=` for `--requires`: comma-separated capabilities, each one the registry knows."""
    items = [item.strip() for item in text.split(",")]
    unknown = [item for item in items if item not in CAPABILITIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown capability {unknown[0]!r} in {text!r}; "
                                         f"known: {', '.join(CAPABILITIES)}")
    return list(dict.fromkeys(items))


def capacity_list(text: str) -> dict[str, int]:
    """An argparse `type=` for `--capacity MODEL=N,...`: the items as `name_list` reads them, each a
    name and a whole number >= 0; a model given twice is an error (a dict would keep the last value)."""
    caps: dict[str, int] = {}
    for item in name_list(text):
        name, sep, count = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"expected MODEL=N, got {item!r}")
        if not re.fullmatch(r"[0-9]+", count):
            raise argparse.ArgumentTypeError(f"{item!r}: N must be a whole number >= 0, got {count!r}")
        if name in caps:
            raise argparse.ArgumentTypeError(f"{name!r} is given twice ({name}={caps[name]}, {name}={count}); "
                                             "give it once")
        caps[name] = int(count)
    return caps


def read_text_argument(raw: str) -> tuple[str, Path]:
    """The UTF-8 text of the file `raw` names, or of stdin for '-', and how errors should name it
    (`<stdin>`, whose parent is the working directory: relative paths in it are read from there).
    A file that cannot be read, or is not UTF-8, is a CliError saying which and why."""
    from pickwise.registry.jsonl import read_input

    label = Path("<stdin>") if raw == "-" else Path(raw)
    try:
        return read_input(raw).decode("utf-8"), label
    except OSError as exc:
        raise CliError(f"cannot read {label}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"cannot read {label}: not UTF-8 text (byte {exc.start})") from None


def add_registry_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--registry DIR` option; defaults to the shipped registry."""
    parser.add_argument(
        "--registry",
        metavar="DIR",
        default=None,
        help="the whole registry, one directory (default: your models in $PICKWISE_HOME/registry, "
             "~/.pickwise/registry, over the shipped ones)",
    )


def registry_location(option: str | None) -> tuple[Path, Path | None]:
    """(directory, base): `--registry DIR` names the whole registry; without it, the user's registry
    layered over the shipped one (writes go to the user's)."""
    from pickwise.registry import default_registry_dir, user_registry_dir

    return (Path(option), None) if option else (user_registry_dir(), default_registry_dir())


def load_registry_option(option: str | None, *, writable: bool = False):
    """The validated registry at `--registry`: a RegistrySnapshot, or with `writable` the Registry
    store (models add/remove, select); an invalid one is a CliError listing every problem."""
    from pickwise.registry import Registry, RegistryError, load_registry

    directory, base = registry_location(option)
    try:
        return Registry(directory, base=base) if writable else load_registry(directory, base=base)
    except RegistryError as exc:
        raise CliError(f"registry {directory} is invalid:\n{exc}") from None


def load_tables_option(paths: list[str], option: str = "--data") -> list:
    """The routing tables `--data` names, each read once; a missing, unreadable or malformed table (or
    one listed twice, which would double its rows) is a CliError naming it. Logged outcomes in the
    long format name models as the user's registry does: an alias becomes its model's name."""
    from pickwise.predictor.data import load_table

    snapshot = None

    def resolve(name: str) -> str:
        nonlocal snapshot
        if snapshot is None:
            snapshot = load_registry_option(None)
        return snapshot.get(name).name if name in snapshot else name

    tables, seen = [], set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            raise CliError(f"{option} {raw}: is a directory; name the table files in it")
        if not path.is_file():
            raise CliError(f"{option} {raw}: no such file")
        if path.resolve() in seen:
            raise CliError(f"{option} {raw}: listed twice")
        seen.add(path.resolve())
        try:
            tables.append(load_table(path, resolve))
        except (ValueError, OSError) as exc:
            raise CliError(f"{option} {raw}: not a readable routing table ({exc})") from None
        except Exception as exc:  # pyarrow raises its own types for corrupt parquet
            raise CliError(f"{option} {raw}: not a readable parquet routing table ({type(exc).__name__}: {exc})") from None
        hashed = tables[-1].extra.get("hash_only_rows")
        if hashed:
            print(f"{option} {raw}: {hashed} row(s) keep only the prompt's hash and are left out (no text to "
                  "encode)", file=sys.stderr)
    return tables


def add_artifact_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--artifact DIR` option; defaults to the shipped predictor."""
    parser.add_argument(
        "--artifact",
        metavar="DIR",
        default=None,
        help="predictor artifact directory (default: the one `pickwise artifact promote` made serve, "
             "else the shipped one, predictor/artifacts/default)",
    )


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--precision` of the offline commands (`predict`, `eval`): fp32 unless asked, so their
    figures are the same on every machine; `serve` has its own, defaulting to auto (fastest here)."""
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="how the encoder runs (default fp32, bit-stable across machines); bf16 and onnx-int8 are "
                             "faster on a CPU at a small accuracy cost (docs/performance.md)")
