"""The shipped probe set: the prompts a new model is run on so pickwise can place it without retraining.

The file (`registry/probes/probe_set.jsonl`) is written by `tools/build_probe_set.py`
from the training rows of the data tables; this module only reads and checks it, so the
registry never needs the data tables (or the predictor) at run time.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pickwise.errors import PickwiseError

DEFAULT_PROBE_SET_PATH = Path(__file__).resolve().parent / "probe_set.jsonl"


class ProbeSetError(PickwiseError, ValueError):
    """The probe-set file is missing or malformed (names the file and line)."""


class ProbeEntry(BaseModel):
    """One probe prompt, with what is needed to grade an answer to it.

    `reference` is the correct answer where the source table records one (MMLU-Pro's
    letter); `choices` lists the option letters of a multiple-choice prompt ("ABCD").
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_id: str = Field(min_length=1)
    table: str = Field(min_length=1)
    task: str
    prompt: str = Field(min_length=1)
    reference: str | None = None
    choices: str | None = Field(default=None, pattern=r"^[A-Z]{2,26}$")

    @model_validator(mode="after")
    def _reference_is_a_choice(self) -> ProbeEntry:
        if self.reference is not None and self.choices is not None and self.reference not in self.choices:
            raise ValueError(f"reference {self.reference!r} is not one of the choices {self.choices!r}")
        return self

    @property
    def gradable(self) -> bool:
        """True when `pickwise probe score` can grade an answer: a multiple-choice prompt with a reference."""
        return self.reference is not None and self.choices is not None


def _resolve(path: str | os.PathLike | None) -> tuple[Path, tuple[int, int] | None]:
    """The file and its (mtime, size) stamp: the caches key on both, so an edited file is read again."""
    path = DEFAULT_PROBE_SET_PATH if path is None else Path(path).resolve()
    try:
        stat = path.stat()
    except OSError:
        return path, None
    return path, (stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load(path: Path, stamp: tuple[int, int] | None) -> tuple[ProbeEntry, ...]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProbeSetError(f"{path}: cannot read the probe set ({exc.strerror})") from None
    entries: list[ProbeEntry] = []
    first_line: dict[str, int] = {}
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        if not chunk.strip():
            continue
        try:
            entry = ProbeEntry.model_validate(json.loads(chunk.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
            raise ProbeSetError(f"{path}:{number}: not a probe entry: {exc}") from None
        if entry.prompt_id in first_line:
            raise ProbeSetError(
                f"{path}:{number}: duplicate prompt_id {entry.prompt_id!r} (first on line {first_line[entry.prompt_id]})"
            )
        first_line[entry.prompt_id] = number
        entries.append(entry)
    if not entries:
        raise ProbeSetError(f"{path}: the probe set is empty")
    return tuple(entries)


def load_probe_set(path: str | os.PathLike | None = None) -> tuple[ProbeEntry, ...]:
    """Every probe entry in file order (the shipped set by default); read once per path, then cached."""
    return _load(*_resolve(path))


def probe_index(path: str | os.PathLike | None = None) -> dict[str, ProbeEntry]:
    """prompt_id -> entry."""
    return {e.prompt_id: e for e in load_probe_set(path)}


def probe_ids(path: str | os.PathLike | None = None) -> frozenset[str]:
    """The prompt ids a model's probe results may use."""
    return frozenset(e.prompt_id for e in load_probe_set(path))


@functools.lru_cache(maxsize=8)
def _version(path: Path, stamp: tuple[int, int] | None) -> str:
    _load(path, stamp)  # a malformed file has no version
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def probe_set_version(path: str | os.PathLike | None = None) -> str:
    """sha256 (first 16 hex) of the probe-set file: artifacts record it to know which prompts they embedded."""
    return _version(*_resolve(path))
