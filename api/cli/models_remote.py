"""`pickwise models list|show|add|remove --server URL`: the registry of a running service, through its
/v1/models routes, so the models a user lists and edits are the ones that server routes with.

Writes send $PICKWISE_ADMIN_TOKEN (the variable the server reads its own token from) as the bearer
token. Failures are the other remote commands' (pickwise.api.cli.remote): the URL, the status and
the server's detail, exit 2.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pickwise.api.cli.options import CliError
from pickwise.api.cli.remote import Server
from pickwise.api.http.settings import ADMIN_TOKEN_ENV
from pickwise.api.schemas import ModelInfo, ModelList, ModelRemoved, ModelWritten
from pickwise.registry import ModelSpec, RegistryError
from pickwise.registry.errors import RegistryIssue
from pickwise.registry.store import NEW_MODEL_LABEL

YAML_TYPE = "application/yaml"


def spec_of(info: ModelInfo) -> ModelSpec:
    """The registry entry of a server's model description, without what the server adds to it."""
    extra = set(ModelInfo.model_fields) - set(ModelSpec.model_fields)
    return ModelSpec.model_validate_json(info.model_dump_json(exclude=extra))


class RemoteRegistry:
    """The registry of the pickwise service at `url`."""

    def __init__(self, url: str, args: argparse.Namespace):
        self.token = os.environ.get(ADMIN_TOKEN_ENV) or None
        self.server = Server(url, args, token=self.token)
        self.where = f"the pickwise server at {url}"

    def listing(self) -> ModelList:
        return ModelList.model_validate(self.server.answer("GET", "/v1/models"))

    def get(self, name: str) -> ModelWritten:
        return ModelWritten.model_validate(self.server.answer("GET", _model_path(name)))

    def add(self, text: str, name: str, *, replace: bool, label: Path, same_lines: bool) -> tuple[bool, ModelWritten]:
        """(whether it replaced a model, the server's answer): POST a new model, or with `replace` PUT it
        under its name (a model of that name is replaced; none, it is added). Problems the server's registry
        finds (a taken name, a `similar_to` it lacks) are printed as the local path prints them, naming the
        user's file `label`, with the line when `text` has the file's lines (`same_lines`)."""
        method, path = ("PUT", _model_path(name)) if replace else ("POST", "/v1/models")
        status, answer = self.server.call(method, path, text, content_type=YAML_TYPE)
        issues = _registry_issues(answer, label, same_lines) if status in (409, 422) else []
        if issues:
            raise CliError(f"not added: {self.where} answered HTTP {status}:\n{RegistryError(issues)}")
        status, answer = self._checked(status, answer)
        return status == 200, ModelWritten.model_validate(answer)

    def remove(self, name: str) -> ModelRemoved:
        return ModelRemoved.model_validate(self._checked(*self.server.call("DELETE", _model_path(name)))[1])

    def _checked(self, status: int, answer: Any) -> tuple[int, Any]:
        """A write's answer, or its refusal as a CliError."""
        if status in (200, 201):
            return status, answer
        refusal = self.server.refusal(status, answer)
        if status in (401, 403):  # say where the token comes from, which the server's detail cannot
            sent = "it is not set here" if self.token is None else "this one was sent"
            refusal = CliError(f"{refusal} (registry writes send ${ADMIN_TOKEN_ENV} as the bearer token; {sent})")
        raise refusal


def _registry_issues(body: Any, label: Path, same_lines: bool) -> list[RegistryIssue]:
    """The registry problems of a refused write ({message, file, model, field, line} each), the sent entry's
    (the server's "<new model>") named as `label`; [] when the body lists none."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not all(isinstance(e, dict) and "message" in e for e in errors):
        return []
    issues = []
    for error in errors:
        ours = error.get("file") == NEW_MODEL_LABEL.name
        file = label if ours else error.get("file")
        issues.append(RegistryIssue(str(error["message"]), file=Path(file) if file else None, model=error.get("model"),
                                    field=error.get("field"), line=error.get("line") if same_lines or not ours else None))
    return issues


def _model_path(name: str) -> str:
    from pickwise.api.http.routes.models import model_url  # the server's own rule: one encoded path segment

    return model_url(name)
