"""Load and validate a registry directory into a RegistrySnapshot.

Validation runs in three passes so one load reports every problem: each file
on its own (YAML syntax, shape, per-model fields), then across files (duplicate
names and aliases, `similar_to` targets), then probe results. Only a registry
with no problem at all becomes a snapshot.
"""
from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pickwise.registry.disk import DiskRecord
from pickwise.registry.errors import RegistryError, RegistryIssue
from pickwise.registry.jsonl import lone_surrogate
from pickwise.registry.names import skeleton
from pickwise.registry.pydantic_messages import field_path, iter_field_errors
from pickwise.registry.schema import MAX_NAME_LENGTH, ModelSpec
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
    """The registry's YAML files, sorted by name (non-recursive). Every entry with such a name counts,
    whatever it is: one that is not a readable file (a directory, a dangling or looping link) is an
    error of the load, not a file that silently never was."""
    return sorted(p for p in directory.iterdir() if is_registry_file_name(p.name))


def _unreadable(path: Path, exc: OSError) -> str:
    if path.is_symlink() and exc.errno == errno.ENOENT:
        return "cannot read the file: it is a symbolic link to a file that does not exist"
    return f"cannot read the file: {exc.strerror}"


@dataclass(frozen=True)
class LoadedEntry:
    """One model as written in a file: its index there, raw mapping, validated spec (None if invalid)."""

    path: Path
    index: int
    raw: Any
    spec: ModelSpec | None
    # the YAML source and this entry's place in it, so checks across entries can name a line too
    source: Any = None
    prefix: tuple[Any, ...] = ()

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """1-based line of this entry's field at `loc` (as `ParsedYaml.line_of`), None without a source."""
        return self.source.line_of(self.prefix + loc) if self.source is not None else None


def _entry_label(raw: Any, index: int) -> str:
    """How problems name an entry: its name, cut where no valid name is that long (every problem of
    the entry repeats it, and an answer or a terminal should not repeat a megabyte)."""
    name = raw.get("name") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not name.strip():
        return f"#{index + 1} (no name)"
    return name if len(name) <= MAX_NAME_LENGTH else name[:MAX_NAME_LENGTH] + "..."


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
        entries.append(LoadedEntry(path=path, index=index, raw=raw, spec=spec, source=parsed, prefix=prefix))
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
    looks: dict[str, tuple[str, LoadedEntry]] = {}  # skeleton -> (the name, its entry)
    for entry in entries:
        spec = entry.spec
        for kind, name in [("name", spec.name)] + [("alias", a) for a in spec.aliases]:
            loc = ("name",) if kind == "name" else ("aliases", spec.aliases.index(name))
            field = "name" if kind == "name" else f"aliases[{loc[1]}]"
            first = owner.get(name)
            if first is not None:
                issues.append(RegistryIssue(
                    f"{kind} '{name}' is already used by model '{first.spec.name}' in {first.path.name}"
                    f" (duplicate in {entry.path.name})",
                    file=entry.path, model=spec.name, field=field, line=entry.line_of(loc),
                ))
                continue
            owner[name] = entry
            twin = looks.setdefault(skeleton(name), (name, entry))
            if twin[1] is not entry:  # a model may alias look-alikes of its own name, never of another's
                how = "differs only in case" if name.casefold() == twin[0].casefold() else "look-alike characters"
                issues.append(RegistryIssue(
                    f"{kind} {name!a} looks like '{twin[0]}' of model '{twin[1].spec.name}' in {twin[1].path.name}"
                    f" ({how}); choose a name that reads differently",
                    file=entry.path, model=spec.name, field=field, line=entry.line_of(loc),
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
                file=entry.path, model=model, field="probe.similar_to", line=entry.line_of(("probe", "similar_to")),
            ))
        elif target is entry or (target is None and target_name in _raw_names(entry)):
            issues.append(RegistryIssue(
                "similar_to must name another model, not the model itself",
                file=entry.path, model=model, field="probe.similar_to", line=entry.line_of(("probe", "similar_to")),
            ))


def _probe_results(entries: list[LoadedEntry], issues: list[RegistryIssue]) -> tuple[dict, dict]:
    """Read and validate every model's probe results (the rules live in registry.probes):
    ({model: {prompt_id: score}}, {model: {prompt_id: output tokens}} for models that gave lengths)."""
    with_probe = [e for e in entries if e.spec.probe is not None]
    if not with_probe:
        return {}, {}
    from pickwise.registry.probes.results import (
        parse_probe,  # imported here: only registries with probe sections need it
    )

    scores: dict[str, dict[str, float]] = {}
    lengths: dict[str, dict[str, int]] = {}
    for entry in with_probe:
        try:
            result = parse_probe(entry.spec.probe, entry.path, entry.spec.name, entry.spec.max_output_tokens)
        except RegistryError as exc:
            issues.extend(exc.errors)
            continue
        if result is not None:
            scores[entry.spec.name] = result.scores
            if result.lengths:
                lengths[entry.spec.name] = result.lengths
    return scores, lengths


def _probe_file(entry: LoadedEntry) -> Path | None:
    """The results file a model's probe section names (as registry.probes reads it), or None."""
    probe = entry.spec.probe
    if probe is None or not isinstance(probe.results, str):
        return None
    target = Path(probe.results).expanduser()
    return target if target.is_absolute() else entry.path.parent / target


def _read_probe_files(entries: list[LoadedEntry], record: DiskRecord) -> dict[Path, bytes]:
    """The bytes of every results file the models name, read (and stamped) before they are parsed, so a
    change made while they are parsed shows at the next look. A missing or unreadable one is stamped
    too; parsing it reports the problem."""
    contents = {}
    for entry in entries:
        target = _probe_file(entry)
        if target is not None and target not in contents:
            try:
                contents[target] = record.read(target)
            except OSError:
                pass
    return contents


def _content_version(directory: Path, base: Path | None, contents: Mapping[Path, bytes],
                     probe_files: Mapping[Path, bytes]) -> str:
    """sha256 (first 16 hex) over the sorted (relative path, bytes) of YAML files and referenced probe files;
    a shipped layer's files count by their path under it, so the version does not depend on where
    pickwise is installed."""
    def rel(path: Path) -> str:
        if base is not None and path.resolve().is_relative_to(base.resolve()):
            return "shipped/" + os.path.relpath(path.resolve(), base.resolve())
        return os.path.relpath(path.resolve(), directory.resolve())

    files = {rel(p): data for p, data in contents.items()}
    for target, data in probe_files.items():
        files[rel(target)] = data
    digest = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        digest.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()[:16]


# (path, sha256 of its bytes) -> what parsing them gave: the entries and the file's own problems
ParseCache = dict[tuple[Path, bytes], tuple[list[LoadedEntry], list[RegistryIssue]]]


def _parse_file(path: Path, data: bytes) -> tuple[list[LoadedEntry], list[RegistryIssue]]:
    issues: list[RegistryIssue] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [RegistryIssue(f"not UTF-8 text (byte {exc.start})", file=path)]
    return parse_registry_text(text, path, issues), issues


def load_registry(directory: str | os.PathLike, *, overlay: Mapping[str, bytes | None] | None = None,
                  base: str | os.PathLike | None = None, record: DiskRecord | None = None,
                  parsed: ParseCache | None = None) -> RegistrySnapshot:
    """Load every `*.yaml`/`*.yml` file of `directory`; raise RegistryError listing all problems.

    `overlay` (file name -> bytes, or None to drop a file) validates a change
    before it is written: the store uses it so a bad add or remove never touches disk.
    `base` is a read-only layer under `directory` (the shipped models under a user's own): a model of
    `directory` with the name of a `base` model replaces it; `directory` may then be missing or empty.
    `record` is filled with what was listed and read, whether the load succeeds or not: the store
    compares it with the disk later to know whether to load again. `parsed` carries each file's parse
    from one load to the next, so a reload parses only the files whose bytes changed (the checks across
    files still run on all of them); entries are immutable, so sharing them is safe.
    """
    record = record if record is not None else DiskRecord()
    directory = Path(directory)
    base = Path(base) if base is not None else None
    if not directory.is_dir() and (base is None or directory.exists()):
        what = "is a file, not a registry directory" if directory.exists() else "registry directory not found"
        raise RegistryError(RegistryIssue(f"{what} (expected a directory of *.yaml files)", file=directory))
    contents: dict[Path, bytes] = {}
    unreadable = []
    try:
        layer_files = registry_files(base) if base is not None else []
        files = registry_files(directory) if directory.is_dir() else []
    except OSError as exc:
        raise RegistryError(RegistryIssue(f"cannot list the registry directory: {exc.strerror}", file=directory)) from None
    record.listed = frozenset([*layer_files, *files])
    for path in [*layer_files, *files]:
        try:
            contents[path] = record.read(path)
        except OSError as exc:  # e.g. mode 000: a registry error naming the file, not a 500 or a traceback
            unreadable.append(RegistryIssue(_unreadable(path, exc), file=path))
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
    seen: ParseCache = {}
    for path in sorted(contents):
        key = (path, hashlib.sha256(contents[path]).digest())
        file_entries, file_issues = parsed[key] if parsed is not None and key in parsed else _parse_file(path, contents[path])
        seen[key] = (file_entries, file_issues)
        entries.extend(file_entries)
        issues.extend(file_issues)
    if parsed is not None:  # only the files of this load: the cache never outgrows the registry
        parsed.clear()
        parsed.update(seen)
    if base is not None:
        entries = _shadowed(entries, directory)
    valid = [e for e in entries if e.spec is not None]
    owner = _check_names(valid, issues)
    _check_similar_to(entries, owner, issues)
    probe_files = _read_probe_files(valid, record)
    scores, lengths = _probe_results(valid, issues)
    if issues:
        raise RegistryError(issues)
    models = tuple(sorted((e.spec for e in valid), key=lambda s: s.name))
    return RegistrySnapshot(
        models=models,
        version=_content_version(directory, base, contents, probe_files),
        directory=directory,
        base=base,
        _files={e.spec.name: e.path for e in valid},
        _probe_scores=scores,
        _probe_lengths=lengths,
    )
