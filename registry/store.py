"""The live registry behind the CLI and the service: one snapshot at a time, safe writes.

Readers take `registry.snapshot` (a plain attribute read, never blocked), or `refresh()`, which
first re-reads the directory if its files changed on disk (a hand edit reaches a running service
without a restart; checked at most every `check_interval_s`, one stat per file, and a hash of the
files changed too recently for their timestamps to tell: see registry.disk).
Writers (reload, add, remove) hold one lock, validate the whole resulting
registry *before* touching disk, write with temp file + os.replace so a crash
never leaves a half-written YAML file, and only then swap the snapshot.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pickwise.files import atomic_file
from pickwise.registry.disk import DiskRecord, digest, read_file
from pickwise.registry.errors import NameTakenError, RegistryConflict, RegistryError, RegistryIssue
from pickwise.registry.jsonl import NestedTooDeeply, RepeatedKey, loads_unique
from pickwise.registry.loader import LoadedEntry, ParseCache, load_registry, parse_registry_text, registry_files
from pickwise.registry.names import skeleton
from pickwise.registry.probes.inline import self_contained_text
from pickwise.registry.schema import ModelSpec
from pickwise.registry.snapshot import RegistrySnapshot
from pickwise.registry.yaml_edit import remove_list_item, replace_list_item
from pickwise.registry.yaml_source import parse_yaml

log = logging.getLogger("pickwise.registry")
NEW_MODEL_LABEL = Path("<new model>")  # how errors name a model's text before it has a file


def safe_file_stem(name: str) -> str:
    """A file-name-safe stem for a model name (`mistralai/Mixtral-8x7B` -> `mistralai_Mixtral-8x7B`)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")  # a leading dash reads as an option in a shell
    return stem or "model"


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole (a concurrent load never sees a half-written registry file)."""
    with atomic_file(path) as handle:
        handle.write(data)


def _write_or_conflict(write, path: Path) -> None:
    """Run a file write of the store; an OSError (a read-only registry directory, a full disk) becomes a
    RegistryConflict naming the file (HTTP 409, a CLI error line) instead of a 500 or a traceback.
    write_atomically leaves nothing behind when it fails, so the registry stays as it was."""
    try:
        write()
    except OSError as exc:
        raise RegistryConflict(RegistryIssue(f"cannot change {path.name} in the registry directory: "
                                             f"{exc.strerror}; nothing was changed", file=path)) from None


def _to_yaml(data: Any) -> str:
    """YAML text for a model given as data (one mapping, or a list that validation will then reject)."""
    data = dict(data) if isinstance(data, Mapping) else data
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None)


def specs_to_yaml(specs: ModelSpec | list[ModelSpec]) -> str:
    """Registry-file YAML for one model (a mapping) or several (a list), without unset fields.

    One writer for every place that turns loaded models back into a file (adding a model,
    `pickwise models show`, a subset of the default registry for a bench or a test), so they
    all write what the loader reads back unchanged.
    """
    if isinstance(specs, ModelSpec):
        return _to_yaml(specs.model_dump(mode="json", exclude_none=True))
    return _to_yaml([spec.model_dump(mode="json", exclude_none=True) for spec in specs])


def _new_model_text(spec_or_text: Any, fmt: str | None, label: Path) -> str:
    """A new model given as a spec, data, JSON or YAML, as the YAML text to check and write."""
    if isinstance(spec_or_text, ModelSpec):
        return specs_to_yaml(spec_or_text)
    if isinstance(spec_or_text, Mapping):
        return _to_yaml(spec_or_text)
    if not isinstance(spec_or_text, str):
        raise TypeError(f"add_model takes a ModelSpec, a mapping or text, not {type(spec_or_text).__name__}")
    if fmt == "json":
        try:
            return _to_yaml(loads_unique(spec_or_text))
        except (RepeatedKey, NestedTooDeeply) as exc:  # as the YAML loader refuses a repeated key
            raise RegistryError(RegistryIssue(f"invalid JSON: {exc}", file=label)) from None
        except json.JSONDecodeError as exc:
            raise RegistryError(RegistryIssue(f"invalid JSON (column {exc.colno}): {exc.msg}", file=label,
                                              line=exc.lineno)) from None  # as invalid YAML says it
    if fmt not in (None, "yaml"):
        raise ValueError(f"fmt must be 'yaml', 'json' or None, not {fmt!r}")
    return spec_or_text  # YAML (JSON is YAML too) is written as given, comments included


def _one_entry(text: str, label: Path) -> LoadedEntry:
    """The one model entry of a new model's text; RegistryError listing every problem of it alone."""
    issues: list[RegistryIssue] = []
    entries = parse_registry_text(text, label, issues)
    if issues:
        raise RegistryError(issues)
    if len(entries) != 1:
        names = ", ".join(repr(e.spec.name) for e in entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RegistryError(RegistryIssue(f"add one model at a time (the input holds {len(entries)}: {names}): "
                                          "add each in a file (or request) of its own", file=label))
    return entries[0]


def _as_the_user_gave_it(exc: RegistryError, spec_or_text: Any, fmt: str | None, label: Path) -> RegistryError:
    """`exc` as the user should read it: a model given as JSON or data was turned into YAML here, whose
    line numbers would point nowhere the user can see, so its problems lose them."""
    if isinstance(spec_or_text, str) and fmt != "json":
        return exc
    return type(exc)([dataclasses.replace(issue, line=None) if issue.file == label else issue
                      for issue in exc.errors])


def standalone_model_text(spec_or_text: Any, *, fmt: str | None = None, source_dir: str | os.PathLike | None = None,
                          label: str | os.PathLike | None = None) -> tuple[str, ModelSpec]:
    """(the YAML text `Registry.add_model` would write, the model) for one new model checked on its own:
    what a client sends a server, which cannot read the client's files, so a `probe.results` path is read
    here (relative to `source_dir`) and inline. Problems of the entry itself are raised as `add_model`
    raises them; those only a registry shows (a taken name, a `similar_to` no model has) are left to it."""
    label = Path(label) if label is not None else NEW_MODEL_LABEL
    text = _new_model_text(spec_or_text, fmt, label)
    try:
        spec = _one_entry(text, label).spec
        return self_contained_text(text, spec, Path(source_dir) if source_dir is not None else None, label), spec
    except RegistryError as exc:
        raise _as_the_user_gave_it(exc, spec_or_text, fmt, label) from None


class Registry:
    """Thread-safe holder of the current RegistrySnapshot of one directory (over a read-only `base`
    layer of shipped models, when given: writes then go to `directory` only, created when first needed)."""

    check_interval_s = 1.0  # how stale `refresh()` may be: at most one scan of the directory per interval

    def __init__(self, directory: str | os.PathLike, *, base: str | os.PathLike | None = None):
        self._directory = Path(directory)
        self._base = Path(base) if base is not None else None
        self._lock = threading.Lock()
        self._looking = threading.Lock()  # held while a background look (see `latest`) runs: one at a time
        self._read = DiskRecord()  # what the last load read: `refresh` loads again when the disk differs
        self._parsed: ParseCache = {}  # each file's last parse, by content: a reload parses only changed files
        self._snapshot: RegistrySnapshot = load_registry(self._directory, base=self._base, record=self._read,
                                                         parsed=self._parsed)
        self._checked = time.monotonic()
        self.reload_error: str | None = None  # why the files on disk do not load (the old snapshot serves)

    def _disk_changed(self) -> bool:
        try:
            files = registry_files(self._directory) if self._directory.is_dir() else []
            if self._base is not None:
                files = [*registry_files(self._base), *files]
            return self._read.changed(files)
        except OSError:
            return True  # the directory cannot be listed: the load says why

    def _load(self) -> None:
        """Load what is on disk now (the caller holds the lock). A load that read files while they were
        being changed is done again, a few times at most: the change is then served at once, not only
        at the next look."""
        for _ in range(3):
            record = DiskRecord()
            try:
                snapshot = load_registry(self._directory, base=self._base, record=record, parsed=self._parsed)
            except RegistryError as exc:
                self._failed(record, exc)
                raise
            self._install(snapshot, record)
            if not self._disk_changed():
                return

    def refresh(self) -> RegistrySnapshot:
        """The snapshot, re-read first when the files on disk changed since the last look.

        A change that does not load keeps the old snapshot serving and sets `reload_error` (the
        service's /readyz shows it) until the files change again; it is not re-parsed meanwhile.
        """
        now = time.monotonic()
        if now - self._checked < self.check_interval_s:
            return self._snapshot
        with self._lock:
            self._checked = now
            if self._disk_changed():
                try:
                    self._load()
                except RegistryError:
                    pass  # recorded in reload_error
            return self._snapshot

    def latest(self) -> RegistrySnapshot:
        """The snapshot now, never waiting: when a look at the disk is due, it (and any reload) runs on a
        background thread, and a later call serves its result. For code on an event loop, which a
        reload (a parse of the whole registry) or a write holding the lock would stall."""
        if time.monotonic() - self._checked >= self.check_interval_s and self._looking.acquire(blocking=False):
            try:
                threading.Thread(target=self._look_in_background, name="pickwise-registry-reload", daemon=True).start()
            except BaseException:
                self._looking.release()
                raise
        return self._snapshot

    def _look_in_background(self) -> None:
        try:
            self.refresh()
        except Exception:  # a thread's exception would go nowhere: say it, keep serving
            log.exception("registry reload failed")
        finally:
            self._looking.release()

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def snapshot(self) -> RegistrySnapshot:
        """The current snapshot; swapped as a whole by reload/add/remove."""
        return self._snapshot

    def reload(self) -> RegistrySnapshot:
        """Re-read the directory; on any error raise RegistryError and keep serving the old snapshot."""
        with self._lock:
            self._load()
            return self._snapshot

    def _load_with(self, overlay: Mapping[str, bytes | None], record: DiskRecord) -> RegistrySnapshot:
        """The registry as it would be with `overlay` (file name -> bytes, None: removed) written."""
        return load_registry(self._directory, overlay=overlay, base=self._base, record=record, parsed=self._parsed)

    def add_model(self, spec_or_text: Any, *, fmt: str | None = None,
                  source_dir: str | os.PathLike | None = None, label: str | os.PathLike | None = None,
                  replace: bool = False, name: str | None = None) -> ModelSpec:
        """Validate one new model against the registry and write it to its own new file.

        Refuses a model whose name or alias is already taken, unless `replace` and every taken name
        belongs to the one model of the same name: that model's entry is then replaced in its own
        file, in one atomic write (a crash leaves the old model or the new, never both or neither).
        Never touches another model's entry. `name`: the model the text must define (a name or an
        alias of it), as a PUT to /v1/models/NAME asks.
        `source_dir` is the directory of the file the model came from: a `probe.results`
        path is read relative to it and written inline, so the registry never depends
        on a file outside itself. Without it (text posted over HTTP) a path is refused.
        `label` is how errors name the input (the user's file; default "<new model>"), never
        the registry file it was about to become.
        """
        label = Path(label) if label is not None else NEW_MODEL_LABEL
        text = _new_model_text(spec_or_text, fmt, label)
        self._refresh_now()  # a model written to disk by hand since is a taken name too
        try:
            return self._add_text(text, label, source_dir, replace, name)
        except RegistryError as exc:
            raise _as_the_user_gave_it(exc, spec_or_text, fmt, label) from None

    def _add_text(self, text: str, label: Path, source_dir: str | os.PathLike | None, replace: bool,
                  name: str | None) -> ModelSpec:
        with self._lock:
            entry = _one_entry(text, label)
            spec = entry.spec
            current = self._snapshot
            wanted = current.get(name).name if name is not None and name in current else name
            if wanted is not None and spec.name != wanted:
                raise RegistryError(RegistryIssue(f"the entry defines model '{spec.name}', not '{wanted}'",
                                                  file=label, model=spec.name, field="name"))
            replaced = current.get(spec.name) if replace and spec.name in current else None
            registered = {skeleton(n): n for m in current.models for n in m.all_names()}
            for loc, name in [(("name",), spec.name), *((("aliases", i), a) for i, a in enumerate(spec.aliases))]:
                taken = name if name in current else registered.get(skeleton(name))
                if taken is not None and current.get(taken) is not replaced:
                    owner = current.get(taken)
                    looks = "" if taken == name else f" looks like '{taken}', which"
                    shipped = current.source(owner.name) == "shipped"
                    if replaced is not None or owner.name != spec.name:
                        how = "rename or remove one of them"
                    elif shipped:  # a shipped model cannot be removed, only overridden
                        how = "add it with --replace (PUT /v1/models/NAME) to override the shipped one"
                    else:
                        how = "remove that model first to replace it, or add it with --replace (PUT /v1/models/NAME)"
                    where = "shipped registry file" if shipped else "registry file"
                    raise NameTakenError(RegistryIssue(
                        f"{name!a}{looks} is already taken by model '{owner.name}' in {where} "
                        f"{current.source_file(owner.name).name}; {how}",
                        file=label, model=spec.name, field="name" if len(loc) == 1 else f"aliases[{loc[1]}]",
                        line=entry.line_of(loc),
                    ))
            written = self_contained_text(text, spec, Path(source_dir) if source_dir is not None else None, label)
            target, data = self._target(written, spec.name, replaced)
            record = DiskRecord()
            try:
                snapshot = self._load_with({target.name: data}, record)
            except RegistryError as exc:  # the checks across the registry (e.g. probe ids) name the input
                ours = [issue.file is not None and issue.file.name == target.name for issue in exc.errors]
                if not any(ours):  # only other files fail: the registry on disk is broken, not this entry
                    raise RegistryConflict([RegistryIssue("the registry's files on disk do not load; fix them "
                                                          "first (nothing was written)"), *exc.errors]) from None
                raise RegistryError([
                    dataclasses.replace(issue, file=label, line=issue.line if written == text else None)
                    if mine else issue for issue, mine in zip(exc.errors, ours)]) from None
            _write_or_conflict(lambda: self._directory.mkdir(parents=True, exist_ok=True), self._directory)
            started = time.time_ns()
            _write_or_conflict(lambda: write_atomically(target, data), target)
            record.wrote(target, data, started)
            self._install(snapshot, record)
            return snapshot.get(spec.name)

    def _target(self, written: str, name: str, replaced: ModelSpec | None) -> tuple[Path, bytes]:
        """Where a new model's text goes, and the bytes of that file: a new file of its own, or, when it
        replaces a model, that model's file with its entry swapped for the new one."""
        path = self._snapshot.source_file(replaced.name) if replaced is not None else None
        if path is None or path.parent != self._directory:  # new, or replacing a shipped model: a file of its own
            return self._free_path(name), written.encode("utf-8")
        text = path.read_text(encoding="utf-8")
        data = parse_yaml(text).data
        if not (isinstance(data, list) and len(data) > 1):
            return path, written.encode("utf-8")
        index = next(i for i, raw in enumerate(data) if isinstance(raw, dict) and raw.get("name") == replaced.name)
        return path, replace_list_item(text, index, written).encode("utf-8")

    def _free_path(self, name: str) -> Path:
        stem = safe_file_stem(name)
        path, n = self._directory / f"{stem}.yaml", 1
        while os.path.lexists(path) or os.path.lexists(path.with_suffix(".yml")):  # a dangling link is taken too
            n += 1
            path = self._directory / f"{stem}-{n}.yaml"
        return path

    def remove_model(self, name_or_alias: str) -> ModelSpec:
        """Remove one model as the files on disk define it now: delete its file if it is alone there, else
        rewrite that file without it. RegistryConflict, changing nothing, when the files on disk do not
        load or the model's file changes while it is being removed."""
        with self._lock:
            current = self._load_for_write()
            spec = current.get(name_or_alias)
            if len(current) == 1:
                raise RegistryError(RegistryIssue("refusing to remove the registry's last model", model=spec.name))
            names = set(spec.all_names())
            dependents = [m.name for m in current.models
                          if m.name != spec.name and m.probe is not None and m.probe.similar_to in names]
            if dependents:  # said here: the reload below would only report the dependent's dangling reference
                raise RegistryError(RegistryIssue(
                    f"cannot remove it: {', '.join(repr(d) for d in dependents)} name(s) it in probe.similar_to; "
                    "change or remove those first", model=spec.name))
            path = current.source_file(spec.name)
            if path.parent != self._directory:
                raise RegistryConflict(RegistryIssue(
                    "it ships with pickwise and cannot be removed; to hide it, register a model of the same "
                    "name with enabled: false (models add --replace, or PUT /v1/models/NAME)", model=spec.name))
            new_bytes = self._without(path, spec)
            record = DiskRecord()
            snapshot = self._load_with({path.name: new_bytes}, record)
            started = time.time_ns()
            if new_bytes is None:
                _write_or_conflict(path.unlink, path)
                record.removed(path)
            else:
                _write_or_conflict(lambda: write_atomically(path, new_bytes), path)
                record.wrote(path, new_bytes, started)
            self._install(snapshot, record)
            return spec

    def _load_for_write(self) -> RegistrySnapshot:
        """Load and serve what is on disk now (the caller holds the lock): a write works from the files as
        they are, hand edits included, never from a snapshot they have since outdated."""
        record = DiskRecord()
        try:
            snapshot = load_registry(self._directory, base=self._base, record=record, parsed=self._parsed)
        except RegistryError as exc:
            self._failed(record, exc)
            raise RegistryConflict([RegistryIssue("the registry's files on disk do not load; fix them first "
                                                  "(nothing was changed)"), *exc.errors]) from None
        self._install(snapshot, record)
        return snapshot

    def _without(self, path: Path, spec: ModelSpec) -> bytes | None:
        """The bytes of `path` without `spec`'s entry, None when the file holds nothing else. Read again here
        and checked against what the load read: a hand edit in between is refused, not overwritten."""
        changed = RegistryConflict(RegistryIssue(f"{path.name} changed while the model was being removed; "
                                                 "nothing was changed, try again", file=path, model=spec.name))
        try:
            data = read_file(path)[1]
        except OSError:
            raise changed from None
        stamp = self._read.stamps.get(path)
        if stamp is None or digest(data) != stamp.digest:
            raise changed
        text = data.decode("utf-8")
        entries = parse_registry_text(text, path, [])
        if len(entries) == 1:
            return None
        index = next(e.index for e in entries if e.spec is not None and e.spec.name == spec.name)
        return remove_list_item(text, index).encode("utf-8")

    def _install(self, snapshot: RegistrySnapshot, read: DiskRecord) -> None:
        """Serve `snapshot` (the caller holds the lock). `read` is what it was loaded from, as read, not
        as the disk is now: a change made since then shows at the next look and is loaded."""
        if snapshot.version != self._snapshot.version:
            log.info("registry loaded: %d models, version %s", len(snapshot), snapshot.version)
        self._snapshot, self._read, self.reload_error = snapshot, read, None

    def _failed(self, read: DiskRecord, exc: RegistryError) -> None:
        """The files on disk do not load (the caller holds the lock): the last good snapshot keeps serving,
        and the error, naming files relative to the registry, is shown until they change."""
        self._read, self.reload_error = read, str(exc.relative_to(self._directory))
        log.warning("registry files do not load; version %s keeps serving: %s",
                    self._snapshot.version, self.reload_error.replace("\n", "; "))

    def _refresh_now(self) -> None:
        self._checked = float("-inf")
        self.refresh()

