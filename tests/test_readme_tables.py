"""The README's command-line and HTTP API tables list what exists, and all of it: each command and
its options against the CLI's parsers, each route and its status codes against the app's OpenAPI."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pickwise.api.cli.main import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
# options every reading command shares, described above the table once
SHARED_OPTIONS = {"--registry", "--artifact", "--server", "--help"}
# `train`'s recipe options are listed under "The predictor" and by `pickwise train --help`
OPTIONS_ELSEWHERE = {"train"}


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _rows(title: str) -> list[list[str]]:
    """The table rows of a README section, as cells (`\\|` inside a cell is not a separator)."""
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in _section(title).splitlines() if line.startswith("| `")]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def _commands() -> dict[str, argparse.ArgumentParser]:
    """'select', 'models add', ...: every runnable command and its parser."""
    out = {}
    for name, parser in _subparsers(build_parser()).items():
        actions = _subparsers(parser)
        out.update({f"{name} {action}": p for action, p in actions.items()} if actions else {name: parser})
    return out


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}


def _cli_table() -> dict[str, set[str]]:
    """{command: the options its row names}; a row like `outcomes import FILE` \\| `export` names several."""
    listed = {}
    for what, _, options in _rows("The command line"):
        heads = re.findall(r"`([^`]+)`", what)
        group = heads[0].split()[0]
        flags = set(re.findall(r"--[a-z][a-z-]*", what + " " + options))
        for head in heads:
            words = [w for w in head.split() if re.fullmatch(r"[a-z]+", w)]
            listed[" ".join(words if words[0] == group else [group, *words])] = flags
    return listed


def test_the_cli_table_lists_every_command_and_only_real_ones():
    assert set(_cli_table()) == set(_commands())


@pytest.mark.parametrize("command", sorted(_commands()))
def test_the_cli_table_lists_each_commands_options_and_only_real_ones(command):
    commands, listed = _commands(), _cli_table()
    siblings = set().union(*(_options(p) for name, p in commands.items() if name.split()[0] == command.split()[0]))
    assert listed[command] <= siblings, f"the README lists options `{command}` does not have"
    if command not in OPTIONS_ELSEWHERE:
        assert _options(commands[command]) - SHARED_OPTIONS <= listed[command], f"options of `{command}` missing"


def test_the_api_table_lists_every_route_and_its_status_codes(api):
    spec = api.get("/openapi.json").json()
    real = {f"{method.upper()} {path.replace('{job_id}', '{id}')}": set(op["responses"])
            for path, ops in spec["paths"].items() for method, op in ops.items()}
    rows = []  # (routes of one row, the status codes it lists)
    for route, *_, codes in _rows("The HTTP API"):
        method, *paths = route.strip("`").split(" | ")[0].replace("`, `", " ").split()
        listed = set(re.findall(r"(?<![\d.,])([1-5]\d\d)(?![\d,.])", codes))
        rows.append(([f"{method} {path}" for path in paths], listed))  # "`GET /a`, `/a/{x}`": two paths, one row
    assert {r for routes, _ in rows for r in routes} == set(real)
    for routes, codes in rows:
        answers = set().union(*(real[r] for r in routes))
        assert codes <= answers, f"{routes}: the README lists {sorted(codes - answers)}, which they never answer"
        # FastAPI's 422 on a path parameter is never reached (any string is a name or an id)
        assert answers - {"422"} <= codes | ({"200"} if routes[0].startswith("POST /openai/") else set()), \
            f"{routes}: answer {sorted(answers - codes)} the README does not list"


def test_serve_help_names_every_route_family(api):
    """`pickwise serve --help` named six of the ten route families (no /v1/predict, feedback, outcomes or gateway)."""
    described = _commands()["serve"].description
    for path in api.get("/openapi.json").json()["paths"]:
        family = re.sub(r"/\{[^}]+\}$", "", path)
        family = "/openai/v1" if family.startswith("/openai/v1") else re.sub(r"^/v1/plans$", "/v1/plan(s)", family)
        assert family in described, path
