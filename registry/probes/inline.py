"""Make a new model's probe results part of its own YAML text before it joins a registry.

An author writes `probe: {results: probes/my-model.csv}` relative to *their* YAML
file. Copied into the registry directory, that path would resolve against the
registry (and be missing), and a registry pointing at files outside itself breaks
when moved or served elsewhere. So a results path is read relative to the author's
file and its rows replace the path inline. Text that arrives without a file (an
HTTP body) may not name a path at all: the server would otherwise read any file an
anonymous client names.

The rows are spliced in where the path stood, so the author's comments survive;
if the splice does not parse back to exactly the intended data, the model is
dumped cleanly instead.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from pickwise.registry.errors import RegistryError, RegistryIssue
from pickwise.registry.probes.results import FIELD, parse_probe
from pickwise.registry.schema import ModelSpec
from pickwise.registry.yaml_source import ParsedYaml, parse_yaml


def _results_path(parsed: ParsedYaml) -> tuple[Any, ...]:
    """Where `probe.results` sits in a file holding one model (a mapping or a one-item list)."""
    prefix: tuple[Any, ...] = () if isinstance(parsed.data, dict) else (0,)
    return prefix + ("probe", "results")


def _with_rows(data: Any, path: tuple[Any, ...], rows: list[dict[str, Any]]) -> Any:
    """A copy of `data` with the value at `path` replaced by `rows`."""
    data = copy.deepcopy(data)
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = rows
    return data


def _spliced(text: str, parsed: ParsedYaml, path: tuple[Any, ...], rows: list[dict[str, Any]]) -> str | None:
    """`text` with the results scalar replaced by a flow list of the rows (one per line); None if not possible.

    Continuation lines are indented past the `probe` mapping's column, so the
    flow list is valid YAML whether `probe` is written in block or flow style.
    """
    scalar, section = parsed.node_at(path), parsed.node_at(path[:-1])
    if not isinstance(scalar, yaml.ScalarNode) or section is None:
        return None
    indent = " " * (section.start_mark.column + 2)
    body = f",\n{indent}  ".join(json.dumps(r, ensure_ascii=False) for r in rows)
    flow = f"[\n{indent}  {body}\n{indent}]"
    return text[:scalar.start_mark.index] + flow + text[scalar.end_mark.index:]


def self_contained_text(text: str, spec: ModelSpec, source_dir: Path | None, label: Path) -> str:
    """The new model's text with `probe.results` inline, ready to be written into a registry.

    Text whose results are already inline (or absent) comes back unchanged. A
    results path is read relative to `source_dir` and validated with the probe
    rules; without a `source_dir` a path is refused. `label` is how errors name
    the new model's text (it has no file yet).
    """
    probe = spec.probe
    if probe is None or not isinstance(probe.results, str):
        return text
    parsed = parse_yaml(text)
    path = _results_path(parsed)
    if source_dir is None:
        raise RegistryError(RegistryIssue(
            f"probe.results must be inline when registering over the API / without a source file"
            f" (a list of {{prompt_id, score}}), not the path {probe.results!r}",
            file=label, model=spec.name, field=FIELD, line=parsed.line_of(path),
        ))
    try:
        evidence = parse_probe(probe, Path(source_dir) / label.name, spec.name, spec.max_output_tokens)
    except RegistryError as exc:
        raise RegistryError([dataclasses.replace(issue, file=label) for issue in exc.errors]) from None
    rows = evidence.inline_rows() if evidence is not None else []
    expected = _with_rows(parsed.data, path, rows)
    results_file = Path(source_dir) / Path(probe.results).expanduser()  # an absolute path stays as it is
    header = f"# probe.results: {len(rows)} rows inlined from {results_file} when this model was added\n"
    candidate = _spliced(text, parsed, path, rows)
    try:
        if candidate is not None and parse_yaml(candidate).data == expected:
            return header + candidate
    except ValueError:
        pass
    return header + yaml.safe_dump(expected, sort_keys=False, allow_unicode=True, default_flow_style=None)
