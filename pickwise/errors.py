"""The root of pickwise's exception tree.

Every error pickwise raises on purpose is a PickwiseError; each layer defines its own domain
subclasses (RegistryError, ArtifactError, InfeasibleSelection, ...) and each front end maps
them once: the HTTP app to status codes (`pickwise.api.http.errors`), the CLI to exit codes
(`pickwise.api.cli.main`). Anything else that escapes is a bug.
"""
from __future__ import annotations

from typing import Any


class PickwiseError(Exception):
    """Base class of every error pickwise raises for bad input, bad state or an impossible request."""

    @property
    def context(self) -> dict[str, Any]:
        """Facts a layer above added while the error passed through (the request's prompt ids, the
        registry version, ...); front ends show them beside the message."""
        return self.__dict__.setdefault("_context", {})

    def add_context(self, **facts: Any) -> PickwiseError:
        self.context.update(facts)
        return self
