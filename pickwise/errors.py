"""The root of pickwise's exception tree.

Every error pickwise raises on purpose is a PickwiseError; each layer defines its own domain
subclasses (RegistryError, ArtifactError, InfeasibleSelection, ...) and each front end maps
them once: the HTTP app to status codes (`pickwise.api.http.errors`), the CLI to exit codes
(`pickwise.api.cli.main`). Anything else that escapes is a bug.
"""
from __future__ import annotations


class PickwiseError(Exception):
    """Base class of every error pickwise raises for bad input, bad state or an impossible request."""
