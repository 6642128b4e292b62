"""An immutable, versioned view of one loaded registry directory.

Readers hold a snapshot for the length of a request; reloads build a new one
and swap the reference, so a reader never sees half of an update.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pickwise.registry.errors import RegistryIssue, UnknownModelError
from pickwise.registry.names import normal_name
from pickwise.registry.schema import ModelSpec


@dataclass(frozen=True)
class RegistrySnapshot:
    """All models of a registry (disabled ones too), sorted by name, plus where each came from.

    `version` is a content hash of the YAML files and the probe-result files they
    reference, so two snapshots with the same version hold the same data.
    """

    models: tuple[ModelSpec, ...]
    version: str
    directory: Path  # where the registry's own files are (a user's, over the shipped `base`)
    base: Path | None = None  # a read-only layer of shipped models under `directory`
    _files: Mapping[str, Path] = field(repr=False, default_factory=dict)
    _probe_scores: Mapping[str, Mapping[str, float]] = field(repr=False, default_factory=dict)
    _probe_lengths: Mapping[str, Mapping[str, int]] = field(repr=False, default_factory=dict)
    _by_name: Mapping[str, ModelSpec] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_name = {n: spec for spec in self.models for n in spec.all_names()}
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))
        object.__setattr__(self, "_files", MappingProxyType(dict(self._files)))
        frozen_scores = {k: MappingProxyType(dict(v)) for k, v in self._probe_scores.items()}
        object.__setattr__(self, "_probe_scores", MappingProxyType(frozen_scores))
        frozen_lengths = {k: MappingProxyType(dict(v)) for k, v in self._probe_lengths.items()}
        object.__setattr__(self, "_probe_lengths", MappingProxyType(frozen_lengths))

    def get(self, name_or_alias: str) -> ModelSpec:
        """The model with this name or alias; UnknownModelError (a KeyError and RegistryError) otherwise."""
        try:
            return self._by_name[name_or_alias]
        except (KeyError, TypeError):
            if isinstance(name_or_alias, str) and (normal := normal_name(name_or_alias)) in self._by_name:
                return self._by_name[normal]  # names are kept in NFKC: `ｇpt-4` is `gpt-4`
            if not (hint := self.did_you_mean(name_or_alias)):
                known = ", ".join(s.name for s in self.models[:8]) + (", ..." if len(self.models) > 8 else "")
                hint = f" (the registry's {len(self.models)} models: {known})"
            error = UnknownModelError(RegistryIssue(f"unknown model '{name_or_alias}'{hint}"))
            error.model = name_or_alias
            raise error from None

    def suggest(self, name: object, limit: int = 3, *, among: Iterable[ModelSpec] | None = None,
                extra: Iterable[str] = ()) -> list[str]:
        """The models a mistyped or shortened `name` most likely meant, case ignored: those whose name
        or alias it equals or begins after any 'org/' prefix ('zephyr-7b-beta', 'gpt-4'), then close
        spellings. Shipped names carry an org and a date or version a user rarely types. `among`: only
        these models (say, those a front end can serve; default all); `extra`: other names it accepts."""
        if not isinstance(name, str) or len(key := normal_name(name).strip().casefold()) < 2:
            return []
        names: dict[str, str] = {}  # a name or alias, casefolded -> the model's name
        for spec in self.models if among is None else among:
            for n in spec.all_names():
                names.setdefault(n.casefold(), spec.name)
        for n in extra:
            names.setdefault(n.casefold(), n)
        tails = {n: n.rsplit("/", 1)[-1] for n in names}
        hits = [names[n] for n in names if key in (n, tails[n])]
        hits += [names[n] for n in names if len(key) >= 3 and (tails[n].startswith(key) or n.startswith(key))]
        closeness = {n: max(difflib.SequenceMatcher(None, key, n).ratio(), difflib.SequenceMatcher(None, key, tails[n]).ratio())
                     for n in names}
        hits += [names[n] for n in sorted(names, key=lambda n: -closeness[n]) if closeness[n] >= 0.75]
        return list(dict.fromkeys(hits))[:limit]

    def did_you_mean(self, name: object, *, among: Iterable[ModelSpec] | None = None, extra: Iterable[str] = ()) -> str:
        """' (did you mean 'A' or 'B'?)' for an unknown `name`, or '' when nothing is close (`suggest`'s options)."""
        found = self.suggest(name, among=among, extra=extra)
        return f" (did you mean {' or '.join(map(repr, found))}?)" if found else ""

    def __contains__(self, name_or_alias: object) -> bool:
        return isinstance(name_or_alias, str) and (name_or_alias in self._by_name
                                                   or normal_name(name_or_alias) in self._by_name)

    def __len__(self) -> int:
        return len(self.models)

    def names(self) -> tuple[str, ...]:
        """Canonical names of every model, sorted."""
        return tuple(s.name for s in self.models)

    def enabled(self) -> tuple[ModelSpec, ...]:
        """The models a router may pick: those with `enabled: true`."""
        return tuple(s for s in self.models if s.enabled)

    def source_file(self, name: str) -> Path:
        """The YAML file that defines the model with this name or alias."""
        return self._files[self.get(name).name]

    def source(self, name: str) -> str:
        """"shipped" for a model of the read-only base layer, "user" for one of a layered registry's
        own directory, "registry" when the registry is one directory."""
        if self.base is None:
            return "registry"
        return "shipped" if self.source_file(name).parent == self.base else "user"

    def probe_scores(self, name: str) -> dict[str, float] | None:
        """Validated probe results (prompt_id -> score) of the model, or None if it has none."""
        scores = self._probe_scores.get(self.get(name).name)
        return dict(scores) if scores is not None else None

    def probe_lengths(self, name: str) -> dict[str, int] | None:
        """Output tokens of the model's probe answers (prompt_id -> tokens), or None if its results give none."""
        lengths = self._probe_lengths.get(self.get(name).name)
        return dict(lengths) if lengths is not None else None
