"""Load and validate a registry directory into a RegistrySnapshot.

Validation runs in three passes so one load reports every problem: each file
on its own (YAML syntax, shape, per-model fields), then across files (duplicate
names and aliases, `similar_to` targets), then probe results. Only a registry
with no problem at all becomes a snapshot.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pickwise.registry.errors import RegistryError, RegistryIssue
from pickwise.registry.jsonl import lone_surrogate
from pickwise.registry.pydantic_messages import field_path, iter_field_errors
from pickwise.registry.schema import ModelSpec
from pickwise.registry.snapshot import RegistrySnapshot
from pickwise.registry.yaml_source import YamlSyntaxError, parse_yaml

__all__ = ["RegistryError", "default_registry_dir", "load_registry", "registry_files", "parse_registry_text"]

YAML_SUFFIXES = (".yaml", ".yml")


def default_registry_dir() -> Path:
    """The registry shipped with pickwise (`registry/defaults`)."""
    return Path(__file__).resolve().parent / "defaults"


HOME_ENV = "PICKWISE_HOME"


def pickwise_home() -> Path:
    """$PICKWISE_HOME, default ~/.pickwise: the user's registry, outcome store and promoted artifacts."""
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() if home else Path.home() / ".pickwise"


def user_registry_dir() -> Path:
    """Where a user's own models live, layered over the shipped ones: $PICKWISE_HOME/registry
    (default ~/.pickwise/registry), never inside the installed package."""
    return pickwise_home() / "registry"


def is_registry_file_name(name: str) -> bool:
    """True for `*.yaml`/`*.yml`; dotfiles (our atomic-write temp files) and editor backups are skipped."""
    return name.endswith(YAML_SUFFIXES) and not name.startswith((".", "~", "#"))


def registry_files(directory: Path) -> list[Path]:
    """The registry's YAML files, sorted by name (non-recursive)."""
    return sorted(p for p in directory.iterdir() if p.is_file() and is_registry_file_name(p.name))


@dataclass(frozen=True)
class LoadedEntry:
    """One model as written in a file: its index there, raw mapping, validated spec (None if invalid)."""

    path: Path
    index: int
    raw: Any
    spec: ModelSpec | None


def _entry_label(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) and name.strip() else f"#{index + 1} (no name)"


def parse_registry_text(text: str, path: Path, issues: list[RegistryIssue]) -> list[LoadedEntry]:
    """Parse one file's text into entries, appending every problem found to `issues`.

    A file holds one model mapping or a list of them; anything else is an error.
    """
    try:
        parsed = parse_yaml(text)
    except YamlSyntaxError as exc:
        issues.append(RegistryIssue(str(exc), file=path, line=exc.line))
        return []
    data = parsed.data
    if data is None or data == []:
        issues.append(RegistryIssue("file is empty: expected a model mapping or a list of model mappings", file=path))
        return []
    single = isinstance(data, dict)
    if not single and not isinstance(data, list):
        issues.append(RegistryIssue(
            f"expected a model mapping or a list of model mappings, got {type(data).__name__}",
            file=path, line=parsed.line_of(()),
        ))
        return []
    entries = []
    for index, raw in enumerate([data] if single else data):
        prefix: tuple[Any, ...] = () if single else (index,)
        label = _entry_label(raw, index)
        if not isinstance(raw, dict):
            issues.append(RegistryIssue(
                f"list item #{index + 1}: expected a model mapping, got {type(raw).__name__} {raw!r:.40}",
                file=path, line=parsed.line_of(prefix),
            ))
            continue
        surrogate = lone_surrogate(raw)
        if surrogate:  # a YAML/JSON "\udc00" escape: not text, and no response or terminal could print it
            issues.append(RegistryIssue(surrogate, file=path, model=label.encode("utf-8", "backslashreplace").decode(),
                                        line=parsed.line_of(prefix)))
            continue
        try:
            spec = ModelSpec.model_validate(raw)
        except ValidationError as exc:
            for loc, message in iter_field_errors(exc):
                issues.append(RegistryIssue(
                    message, file=path, model=label, field=field_path(loc), line=parsed.line_of(prefix + loc)
                ))
            spec = None
        entries.append(LoadedEntry(path=path, index=index, raw=raw, spec=spec))
    return entries


def _shadowed(entries: list[LoadedEntry], top: Path) -> list[LoadedEntry]:
    """The entries of a layered registry with every lower-layer model that a top-layer model of the
    same name replaces left out."""
    def in_top(entry: LoadedEntry) -> bool:
        return entry.path.parent == top

    replacing = {(e.spec.name if e.spec is not None else _entry_label(e.raw, e.index)) for e in entries if in_top(e)}
    return [e for e in entries if in_top(e) or (e.spec.name if e.spec is not None
                                                else _entry_label(e.raw, e.index)) not in replacing]


def _check_names(entries: list[LoadedEntry], issues: list[RegistryIssue]) -> dict[str, LoadedEntry]:
    """Map every name and alias to its entry; report each one claimed twice, naming both files."""
    owner: dict[str, LoadedEntry] = {}
    for entry in entries:
        spec = entry.spec
        for kind, name in [("name", spec.name)] + [("alias", a) for a in spec.aliases]:
            first = owner.get(name)
            if first is None:
                owner[name] = entry
                continue
            field = "name" if kind == "name" else f"aliases[{spec.aliases.index(name)}]"
            issues.append(RegistryIssue(
                f"{kind} '{name}' is already used by model '{first.spec.name}' in {first.path.name}"
                f" (duplicate in {entry.path.name})",
                file=entry.path, model=spec.name, field=field,
            ))
    return owner


def _similar_to(entry: LoadedEntry) -> tuple[Any, str]:
    """(the entry's `probe.similar_to`, its model's name) read from the validated spec, or from the
    raw mapping of an entry that failed validation, so its target is checked in the same pass."""
    if entry.spec is not None:
        probe = entry.spec.probe
        return (probe.similar_to if probe is not None else None), entry.spec.name
    probe = entry.raw.get("probe") if isinstance(entry.raw, dict) else None
    return (probe.get("similar_to") if isinstance(probe, dict) else None), _entry_label(entry.raw, entry.index)


def _raw_names(entry: LoadedEntry) -> list[str]:
    """The name and aliases an entry that failed validation claims (its similar_to targets are real)."""
    raw = entry.raw if isinstance(entry.raw, dict) else {}
    aliases = raw.get("aliases") if isinstance(raw.get("aliases"), list) else []
    return [n for n in [raw.get("name"), *aliases] if isinstance(n, str)]


def _check_similar_to(entries: list[LoadedEntry], owner: Mapping[str, LoadedEntry], issues: list[RegistryIssue]) -> None:
    """`probe.similar_to` borrows another model's quality prior, so it must name a model of this registry.
    Entries that failed validation are checked too: one pass reports every problem of a file."""
    invalid_names = {n for e in entries if e.spec is None for n in _raw_names(e)}
    for entry in entries:
        target_name, model = _similar_to(entry)
        if not isinstance(target_name, str):
            continue
        target = owner.get(target_name)
        if target is None and target_name not in invalid_names:
            issues.append(RegistryIssue(
                f"similar_to '{target_name}' is not a model name or alias in this registry",
                file=entry.path, model=model, field="probe.similar_to",
            ))
        elif target is entry or (target is None and target_name in _raw_names(entry)):
            issues.append(RegistryIssue(
                "similar_to must name another model, not the model itself",
                file=entry.path, model=model, field="probe.similar_to",
            ))


def _probe_scores(entries: list[LoadedEntry], issues: list[RegistryIssue]) -> dict[str, dict[str, float]]:
    """Read and validate every model's probe results (the rules live in registry.probes)."""
    with_probe = [e for e in entries if e.spec.probe is not None]
    if not with_probe:
        return {}
    from pickwise.registry.probes.results import (
        parse_probe,  # imported here: only registries with probe sections need it
    )

    scores: dict[str, dict[str, float]] = {}
    for entry in with_probe:
        try:
            result = parse_probe(entry.spec.probe, entry.path, entry.spec.name)
        except RegistryError as exc:
            issues.extend(exc.errors)
            continue
        if result is not None:
            scores[entry.spec.name] = result
    return scores


def _content_version(directory: Path, base: Path | None, contents: Mapping[Path, bytes],
                     entries: list[LoadedEntry]) -> str:
    """sha256 (first 16 hex) over the sorted (relative path, bytes) of YAML files and referenced probe files;
    a shipped layer's files count by their path under it, so the version does not depend on where
    pickwise is installed."""
    def rel(path: Path) -> str:
        if base is not None and path.resolve().is_relative_to(base.resolve()):
            return "shipped/" + os.path.relpath(path.resolve(), base.resolve())
        return os.path.relpath(path.resolve(), directory.resolve())

    files = {rel(p): data for p, data in contents.items()}
    for entry in entries:
        probe = entry.spec.probe
        if probe is not None and isinstance(probe.results, str):
            target = (entry.path.parent / probe.results).resolve()
            if target.is_file():
                files[rel(target)] = target.read_bytes()
    digest = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        digest.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()[:16]


def load_registry(directory: str | os.PathLike, *, overlay: Mapping[str, bytes | None] | None = None,
                  base: str | os.PathLike | None = None) -> RegistrySnapshot:
    """Load every `*.yaml`/`*.yml` file of `directory`; raise RegistryError listing all problems.

    `overlay` (file name -> bytes, or None to drop a file) validates a change
    before it is written: the store uses it so a bad add or remove never touches disk.
    `base` is a read-only layer under `directory` (the shipped models under a user's own): a model of
    `directory` with the name of a `base` model replaces it; `directory` may then be missing or empty.
    """
    directory = Path(directory)
    base = Path(base) if base is not None else None
    if not directory.is_dir() and (base is None or directory.exists()):
        raise RegistryError(RegistryIssue("registry directory not found (expected a directory of *.yaml files)", file=directory))
    contents: dict[Path, bytes] = {}
    unreadable = []
    layer_files = registry_files(base) if base is not None else []
    top_files = registry_files(directory) if directory.is_dir() else []
    for path in [*layer_files, *top_files]:
        try:
            contents[path] = path.read_bytes()
        except OSError as exc:  # e.g. mode 000: a registry error naming the file, not a 500 or a traceback
            unreadable.append(RegistryIssue(f"cannot read the file: {exc.strerror}", file=path))
    if unreadable:
        raise RegistryError(unreadable)
    for name, data in (overlay or {}).items():
        if data is None:
            contents.pop(directory / name, None)
        else:
            contents[directory / name] = data
    if not contents:
        raise RegistryError(RegistryIssue("no *.yaml or *.yml files in the registry directory", file=directory))

    issues: list[RegistryIssue] = []
    entries: list[LoadedEntry] = []
    for path in sorted(contents):
        try:
            text = contents[path].decode("utf-8")
        except UnicodeDecodeError as exc:
            issues.append(RegistryIssue(f"not UTF-8 text (byte {exc.start})", file=path))
            continue
        entries.extend(parse_registry_text(text, path, issues))
    if base is not None:
        entries = _shadowed(entries, directory)
    valid = [e for e in entries if e.spec is not None]
    owner = _check_names(valid, issues)
    _check_similar_to(entries, owner, issues)
    scores = _probe_scores(valid, issues)
    if issues:
        raise RegistryError(issues)
    models = tuple(sorted((e.spec for e in valid), key=lambda s: s.name))
    return RegistrySnapshot(
        models=models,
        version=_content_version(directory, base, contents, valid),
        directory=directory,
        base=base,
        _files={e.spec.name: e.path for e in valid},
        _probe_scores=scores,
    )
