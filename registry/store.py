"""The live registry behind the CLI and the service: one snapshot at a time, safe writes.

Readers take `registry.snapshot` (a plain attribute read, never blocked), or `refresh()`, which
first re-reads the directory if its files changed on disk (a hand edit reaches a running service
without a restart; checked at most every `check_interval_s`, one stat per file).
Writers (reload, add, remove) hold one lock, validate the whole resulting
registry *before* touching disk, write with temp file + os.replace so a crash
never leaves a half-written YAML file, and only then swap the snapshot.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pickwise.files import atomic_file
from pickwise.registry.errors import NameTakenError, RegistryConflict, RegistryError, RegistryIssue
from pickwise.registry.loader import load_registry, parse_registry_text, registry_files
from pickwise.registry.probes.inline import self_contained_text
from pickwise.registry.schema import ModelSpec
from pickwise.registry.snapshot import RegistrySnapshot
from pickwise.registry.yaml_edit import remove_list_item, replace_list_item
from pickwise.registry.yaml_source import parse_yaml

NEW_MODEL_LABEL = Path("<new model>")  # how errors name a model's text before it has a file


def safe_file_stem(name: str) -> str:
    """A file-name-safe stem for a model name (`mistralai/Mixtral-8x7B` -> `mistralai_Mixtral-8x7B`)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
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


class Registry:
    """Thread-safe holder of the current RegistrySnapshot of one directory (over a read-only `base`
    layer of shipped models, when given: writes then go to `directory` only, created when first needed)."""

    check_interval_s = 1.0  # how stale `refresh()` may be: at most one scan of the directory per interval

    def __init__(self, directory: str | os.PathLike, *, base: str | os.PathLike | None = None):
        self._directory = Path(directory)
        self._base = Path(base) if base is not None else None
        self._lock = threading.Lock()
        self._snapshot: RegistrySnapshot = self._load()
        self._on_disk = self._disk_state()
        self._checked = time.monotonic()
        self.reload_error: str | None = None  # why the files on disk do not load (the old snapshot serves)

    def _disk_state(self) -> tuple | None:
        """(path, inode, size, mtime) of the registry's YAML files and the probe files its models name: what a
        reload would read. None when the directory cannot be listed."""
        try:
            paths = set(registry_files(self._directory)) if self._directory.is_dir() else set()
            if self._base is not None:
                paths.update(registry_files(self._base))
            for spec in self._snapshot.models:
                if spec.probe is not None and isinstance(spec.probe.results, str):
                    paths.add(self._snapshot.source_file(spec.name).parent / spec.probe.results)
            return tuple(sorted((str(p), st.st_ino, st.st_size, st.st_mtime_ns) for p in paths
                                if (st := p.stat() if p.is_file() else None) is not None))
        except OSError:
            return None

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
            state = self._disk_state()
            if state != self._on_disk:
                self._on_disk = state
                try:
                    self._install(self._load())
                except RegistryError as exc:
                    self.reload_error = str(exc)
            return self._snapshot

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
            self._install(self._load())
            return self._snapshot

    def _load(self, overlay: Mapping[str, bytes | None] | None = None) -> RegistrySnapshot:
        return load_registry(self._directory, overlay=overlay, base=self._base)

    def _new_model_text(self, spec_or_text: Any, fmt: str | None, label: Path) -> str:
        if isinstance(spec_or_text, ModelSpec):
            return specs_to_yaml(spec_or_text)
        if isinstance(spec_or_text, Mapping):
            return _to_yaml(spec_or_text)
        if not isinstance(spec_or_text, str):
            raise TypeError(f"add_model takes a ModelSpec, a mapping or text, not {type(spec_or_text).__name__}")
        if fmt == "json":
            try:
                return _to_yaml(json.loads(spec_or_text))
            except json.JSONDecodeError as exc:
                raise RegistryError(RegistryIssue(f"invalid JSON: {exc.msg}", file=label, line=exc.lineno)) from None
            except RecursionError:
                raise RegistryError(RegistryIssue("invalid JSON: nested too deeply", file=label)) from None
        if fmt not in (None, "yaml"):
            raise ValueError(f"fmt must be 'yaml', 'json' or None, not {fmt!r}")
        return spec_or_text  # YAML (JSON is YAML too) is written as given, comments included

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
        text = self._new_model_text(spec_or_text, fmt, label)
        self._refresh_now()  # a model written to disk by hand since is a taken name too
        try:
            return self._add_text(text, label, source_dir, replace, name)
        except RegistryError as exc:
            if isinstance(spec_or_text, str) and fmt != "json":
                raise
            # the text was written here from JSON or data: its line numbers would point nowhere the user can see
            raise type(exc)([dataclasses.replace(issue, line=None) for issue in exc.errors]) from None

    def _add_text(self, text: str, label: Path, source_dir: str | os.PathLike | None, replace: bool,
                  name: str | None) -> ModelSpec:
        with self._lock:
            issues: list[RegistryIssue] = []
            entries = parse_registry_text(text, label, issues)
            if issues:
                raise RegistryError(issues)
            if len(entries) != 1:
                raise RegistryError(RegistryIssue(f"add one model at a time (the input holds {len(entries)})"))
            spec = entries[0].spec
            current = self._snapshot
            wanted = current.get(name).name if name is not None and name in current else name
            if wanted is not None and spec.name != wanted:
                raise RegistryError(RegistryIssue(f"the entry defines model '{spec.name}', not '{wanted}'",
                                                  file=label, model=spec.name, field="name"))
            replaced = current.get(spec.name) if replace and spec.name in current else None
            for name in spec.all_names():
                if name in current and current.get(name) is not replaced:
                    owner = current.get(name)
                    how = "remove that model first to replace it, or add it with --replace (PUT /v1/models/NAME)" \
                        if replaced is None and owner.name == spec.name else "rename or remove one of them"
                    raise NameTakenError(RegistryIssue(
                        f"'{name}' is already taken by model '{owner.name}' in "
                        f"{current.source_file(owner.name).name}; {how}",
                        model=spec.name,
                    ))
            written = self_contained_text(text, spec, Path(source_dir) if source_dir is not None else None, label)
            target, data = self._target(written, spec.name, replaced)
            try:
                snapshot = self._load(overlay={target.name: data})
            except RegistryError as exc:  # the checks across the registry (e.g. probe ids) name the input
                ours = [issue.file is not None and issue.file.name == target.name for issue in exc.errors]
                if not any(ours):  # only other files fail: the registry on disk is broken, not this entry
                    raise RegistryConflict([RegistryIssue("the registry's files on disk do not load; fix them "
                                                          "first (nothing was written)"), *exc.errors]) from None
                raise RegistryError([
                    dataclasses.replace(issue, file=label, line=issue.line if written == text else None)
                    if mine else issue for issue, mine in zip(exc.errors, ours)]) from None
            _write_or_conflict(lambda: self._directory.mkdir(parents=True, exist_ok=True), self._directory)
            _write_or_conflict(lambda: write_atomically(target, data), target)
            self._install(snapshot)
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
        while path.exists() or path.with_suffix(".yml").exists():
            n += 1
            path = self._directory / f"{stem}-{n}.yaml"
        return path

    def remove_model(self, name_or_alias: str) -> ModelSpec:
        """Remove one model: delete its file if it is alone there, else rewrite that file without it."""
        self._refresh_now()
        with self._lock:
            current = self._snapshot
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
            text = path.read_text(encoding="utf-8")
            data = parse_yaml(text).data
            if isinstance(data, list) and len(data) > 1:
                index = next(i for i, raw in enumerate(data) if isinstance(raw, dict) and raw.get("name") == spec.name)
                new_bytes: bytes | None = remove_list_item(text, index).encode("utf-8")
            else:
                new_bytes = None
            snapshot = self._load(overlay={path.name: new_bytes})
            if new_bytes is None:
                _write_or_conflict(path.unlink, path)
            else:
                _write_or_conflict(lambda: write_atomically(path, new_bytes), path)
            self._install(snapshot)
            return spec

    def _install(self, snapshot: RegistrySnapshot) -> None:
        """Serve `snapshot`, a load of what is on disk now (the caller holds the lock): what it was read
        from, probe files its models name included, is what `refresh` compares against next."""
        self._snapshot, self._on_disk, self.reload_error = snapshot, self._disk_state(), None

    def _refresh_now(self) -> None:
        self._checked = float("-inf")
        self.refresh()

