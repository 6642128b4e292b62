"""`pickwise models list|show|validate|add|remove`: read and edit a model registry from the shell.

Every sub-command takes `--registry DIR` (default: your registry over the shipped one); all but
`validate` take `--server URL` too (default $PICKWISE_SERVER) and then act on that service's registry
(pickwise.api.cli.models_remote), printed as a local one is. Registry problems are printed one per
line, naming file, model and field, with a non-zero exit code and no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from pickwise.api.cli.models_remote import ADMIN_TOKEN_ENV, RemoteRegistry, spec_of
from pickwise.api.cli.options import (
    CliError,
    add_registry_option,
    load_registry_option,
    read_text_argument,
    registry_location,
)
from pickwise.api.cli.remote import add_server_option, server_url
from pickwise.registry import ModelSpec, RegistryError, load_registry, user_registry_dir
from pickwise.registry.errors import display_path
from pickwise.registry.plausibility import entry_warnings
from pickwise.registry.store import specs_to_yaml, standalone_model_text


def _row(spec: ModelSpec, source: str) -> dict:
    return {
        "name": spec.name,
        "source": source,
        "provider": spec.provider,
        "input_per_million": spec.pricing.input_per_million,
        "output_per_million": spec.pricing.output_per_million,
        "ttft_ms": spec.latency.ttft_ms,
        "context_window": spec.context_window,
        "enabled": spec.enabled,
    }


def format_table(specs: tuple[ModelSpec, ...], sources: Mapping[str, str]) -> str:
    """A plain-text table, columns sized to their content (SOURCE: shipped or user, when layered).
    `sources`: each model's RegistrySnapshot.source, "registry" for all when the registry is one directory."""
    layered = any(source != "registry" for source in sources.values())
    header = ("NAME", "PROVIDER", "$/M IN", "$/M OUT", "TTFT ms", "CONTEXT", "ENABLED") + (("SOURCE",) if layered else ())
    rows = [
        (s.name, s.provider, f"{s.pricing.input_per_million:g}", f"{s.pricing.output_per_million:g}",
         f"{s.latency.ttft_ms:g}", f"{s.context_window:,}", "yes" if s.enabled else "no")
        + ((sources[s.name],) if layered else ())
        for s in specs
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 4, 5}
    lines = ["  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    url = server_url(args)
    if url:
        remote = RemoteRegistry(url, args)
        listing = remote.listing()
        version, models, where = listing.registry_version, tuple(listing.models), f"registry of {remote.where}"
        sources = {m.name: m.source for m in listing.models}
    else:
        snapshot = load_registry_option(args.registry, writable=True).snapshot
        version, models = snapshot.version, snapshot.models
        sources = {m.name: snapshot.source(m.name) for m in models}
        where = f"your models in {snapshot.directory} over the shipped ones" if snapshot.base is not None \
            else f"registry {snapshot.directory}"
    specs = tuple(s for s in models if s.enabled) if args.enabled_only else models
    if args.json:
        print(json.dumps({"version": version, "models": [_row(s, sources[s.name]) for s in specs]}, indent=2))
    else:
        print(format_table(specs, sources))
        print(f"\n{len(specs)} models, {where}, version {version}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    url = server_url(args)
    if url:
        remote = RemoteRegistry(url, args)
        info = remote.get(args.name).model
        spec, where = spec_of(info), f"{info.source_file} on {remote.where}"
    else:
        snapshot = load_registry_option(args.registry, writable=True).snapshot
        try:
            spec = snapshot.get(args.name)
        except KeyError as exc:
            raise CliError(str(exc)) from None
        where = display_path(snapshot.source_file(spec.name))
    print(f"# {where}")
    print(specs_to_yaml(spec), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    directory, base = registry_location(args.registry)
    if args.directory:  # your registry's folder is read over the shipped models, as by every command; others alone
        directory, base = registry_location(None) if _same_dir(args.directory, user_registry_dir()) \
            else (Path(args.directory), None)
    try:
        snapshot = load_registry(directory, base=base)
    except RegistryError as exc:
        for issue in exc.errors:
            print(issue)
        raise CliError(f"{len(exc.errors)} error(s) in registry {directory}", code=1) from None
    for spec in snapshot.models:
        for line in entry_warnings(spec):
            print(f"warning: {line}", file=sys.stderr)
    print(f"OK: {len(snapshot)} models, version {snapshot.version}")
    return 0


def _same_dir(a: str | Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == b.resolve()
    except OSError:
        return False


def cmd_add(args: argparse.Namespace) -> int:
    text, path = read_text_argument(args.file)
    url = server_url(args)
    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    source_dir = path.resolve().parent  # probe paths: relative to FILE
    try:
        if url:  # the server cannot read FILE's probe results: they go inline, as they would be written here
            remote = RemoteRegistry(url, args)
            body, spec = standalone_model_text(text, fmt=fmt, source_dir=source_dir, label=path)
        else:
            registry = load_registry_option(args.registry, writable=True)
            before = set(registry.snapshot.names())
            spec = registry.add_model(text, fmt=fmt, source_dir=source_dir, label=path, replace=args.replace)
    except RegistryError as exc:
        raise CliError(f"not added:\n{exc}") from None
    if url:
        replaced, written = remote.add(body, spec.name, replace=args.replace, label=path, same_lines=body == text)
        spec, version = spec_of(written.model), written.registry_version
        where = f"{written.model.source_file} on {remote.where}"
    else:
        replaced, version = spec.name in before, registry.snapshot.version
        where = display_path(registry.snapshot.source_file(spec.name))
    for line in entry_warnings(spec):
        print(f"warning: {line}", file=sys.stderr)
    print(f"{'replaced' if replaced else 'added'} model '{spec.name}' in {where} (registry version {version})")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    url = server_url(args)
    if url:
        remote = RemoteRegistry(url, args)
        removed = remote.remove(args.name)
        name, what, version = removed.removed, f"from {remote.where}", removed.registry_version
    else:
        registry = load_registry_option(args.registry, writable=True)
        try:
            file = registry.snapshot.source_file(args.name)
            name = registry.remove_model(args.name).name
        except RegistryError as exc:
            raise CliError(f"not removed:\n{exc}") from None
        what = f"{'rewrote' if file.exists() else 'deleted'} {display_path(file)}"
        version = registry.snapshot.version
    print(f"removed model '{name}' ({what}; registry version {version})")
    return 0


def _add_location_options(parser: argparse.ArgumentParser, *, writes: bool = False) -> None:
    """--registry DIR here, or --server URL: a service's registry (writes with its admin token)."""
    add_registry_option(parser)
    token = f"; writes send ${ADMIN_TOKEN_ENV}, the server's admin token, as bearer token" if writes else ""
    add_server_option(parser, instead=f"the registry here{token}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, show, validate, add or remove registry models")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("list", help="table of all models (name, provider, prices, ttft, context, enabled)")
    _add_location_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--enabled-only", action="store_true", help="only models with enabled: true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="print one model's YAML (by name or alias)")
    _add_location_options(p)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("validate", help="check a registry directory on this machine (never a --server's); "
                                        "print every error")
    add_registry_option(p)
    p.add_argument("directory", metavar="DIR", nargs="?", help="registry to check (default: --registry; $PICKWISE_HOME/registry is read over the shipped models, any other DIR alone)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("add", help="add the model in FILE (.yaml or .json; - reads YAML or JSON from stdin) as a new "
                                   "registry file; a probe.results path (relative to FILE) is read and written inline "
                                   "(here, also when the model goes to a --server)")
    _add_location_options(p, writes=True)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--replace", action="store_true",
                   help="replace the registered model of the same name (in its own file, atomically)")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("remove", help="remove a model (by name or alias)")
    _add_location_options(p, writes=True)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_remove)
