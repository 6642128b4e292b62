"""Parse a registry YAML text once, keeping the node tree so errors can cite line numbers.

`yaml.safe_load` alone loses positions and silently keeps the last of two equal
keys; composing the node tree first gives both the line of every value and a
way to reject duplicate keys (a second `pricing:` is almost always a mistake).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from pickwise.errors import PickwiseError

# What a hand edit most often did wrong, by the parser's words: said after them.
_SYNTAX_HINTS = (
    ("'\\t'", " (YAML indents with spaces; a tab cannot indent)"),
    ("mapping values are not allowed here",
     " (a key indented more or less than the keys beside it, or an unquoted value holding ': ')"),
)


class YamlSyntaxError(PickwiseError, ValueError):
    """Invalid YAML: `.line` (1-based) and `.column` say where the parser gave up."""

    def __init__(self, message: str, line: int | None, column: int | None = None):
        super().__init__(message)
        self.line, self.column = line, column


@dataclass(frozen=True)
class ParsedYaml:
    """The loaded Python data plus its node tree (None for an empty document)."""

    data: Any
    node: yaml.Node | None

    def line_of(self, path: tuple[Any, ...]) -> int | None:
        """1-based line of the value at `path` (keys and list indexes); the deepest known ancestor if absent."""
        node, line = self.node, None
        if node is not None:
            line = node.start_mark.line + 1
        for step in path:
            node = _child(node, step)
            if node is None:
                break
            line = node.start_mark.line + 1
        return line

    def node_at(self, path: tuple[Any, ...]) -> yaml.Node | None:
        """The node of the value at `path` (keys and list indexes), None if there is no such value."""
        node = self.node
        for step in path:
            node = _child(node, step)
            if node is None:
                return None
        return node


def _child(node: yaml.Node | None, step: Any) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return node.value[step]
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                return value
    return None


def _reject_duplicate_keys(node: yaml.Node | None, seen_nodes: set[int] | None = None) -> None:
    """Each node once: an alias refers to a node already walked, so a "billion laughs" file of a few
    hundred bytes (aliases of aliases) costs linear time here, not exponential."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                if key.value in seen:
                    raise YamlSyntaxError(
                        f"duplicate key '{key.value}' (first on line {seen[key.value]})", line, key.start_mark.column + 1
                    )
                seen[key.value] = line
            _reject_duplicate_keys(value, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, seen_nodes)


def parse_yaml(text: str) -> ParsedYaml:
    """Safe-load one YAML document, raising YamlSyntaxError with the line on bad syntax or duplicate keys."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        _reject_duplicate_keys(node)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        hint = next((h for key, h in _SYNTAX_HINTS if key in problem), "")
        where = f" (column {mark.column + 1})" if mark else ""
        raise YamlSyntaxError(
            f"invalid YAML{where}: {problem}{hint}", mark.line + 1 if mark else None, mark.column + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", None) from None
    except RecursionError:  # thousands of nested [ or {: no model looks like that
        raise YamlSyntaxError("invalid YAML: nested too deeply", None) from None
    finally:
        loader.dispose()
    return ParsedYaml(data=data, node=node)
