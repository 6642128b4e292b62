"""Registry errors that say where the problem is: file, model, field (and line when known).

A load collects every problem it finds before raising, so one run of
`pickwise models validate` lists all of them instead of one per attempt.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from pickwise.errors import PickwiseError


def display_path(path: Path | str | None) -> str:
    """A path as a person wants to read it: relative to the working directory when it lies under it."""
    if path is None:
        return "<input>"
    path = Path(path)
    try:  # the file's own name, not its link target's (a looping link has none)
        return str((path.parent.resolve() / path.name).relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class RegistryIssue:
    """One problem: where it is (file, model, field, line) and what was expected."""

    message: str
    file: Path | None = None
    model: str | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.file is not None:
            parts.append(display_path(self.file) + (f":{self.line}" if self.line is not None else ""))
        if self.model is not None:
            parts.append(f"model '{self.model}'")
        if self.field:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)


class RegistryError(PickwiseError, ValueError):
    """A registry could not be loaded or changed; `.errors` lists every problem found.

    `.file`, `.model` and `.field` are those of the first problem, for callers that
    only want one; `str()` lists all of them, one per line.
    """

    def __init__(self, errors: list[RegistryIssue] | RegistryIssue | str, *, file=None, model=None, field=None):
        if isinstance(errors, str):
            errors = RegistryIssue(errors, file=Path(file) if file is not None else None, model=model, field=field)
        if isinstance(errors, RegistryIssue):
            errors = [errors]
        if not errors:
            raise ValueError("RegistryError needs at least one issue")
        self.errors: list[RegistryIssue] = list(errors)
        first = self.errors[0]
        self.file, self.model, self.field, self.line = first.file, first.model, first.field, first.line
        super().__init__("\n".join(str(e) for e in self.errors) if len(self.errors) > 1 else str(first))

    def relative_to(self, directory: Path) -> RegistryError:
        """The same error naming each file relative to `directory`, the registry's (a file elsewhere by
        its name alone): what a server may show anyone without revealing where its registry lives."""
        def relative(file: Path | None) -> Path | None:
            if file is None:
                return None
            try:
                return Path(os.path.relpath(file, directory)) if Path(file).is_relative_to(directory) else Path(file.name)
            except ValueError:
                return Path(file.name)

        error = type(self)([dataclasses.replace(issue, file=relative(issue.file)) for issue in self.errors])
        error.model, error.field = self.model, self.field
        error.context.update(self.context)
        return error


class UnknownModelError(RegistryError, KeyError):
    """A name or alias that no model in the registry answers to."""

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return ValueError.__str__(self)


class RegistryConflict(RegistryError):
    """A change that clashes with the registry's state, not a fault of the entry itself (HTTP 409,
    not 422): its name is taken, or the registry's files on disk do not load."""


class NameTakenError(RegistryConflict):
    """A new model's name or alias belongs to a registered model."""


class OutcomeError(PickwiseError, ValueError):
    """Bad outcome rows (each named with its line) or a store that cannot be opened."""

    def __init__(self, message: str, problems=()):
        super().__init__(message + "".join(f"\n  {p}" for p in problems))
        self.problems = list(problems)


class StoreUnavailable(OutcomeError):
    """The outcome store's database cannot be reached now (a Postgres server down or refusing us):
    the request may succeed later, unlike a bad row (HTTP 503)."""
