"""Remove one model from a multi-model YAML file while keeping everyone else's text and comments.

Re-dumping the remaining models would throw away every comment in the file
(the shipped registry explains its prices in comments), so we cut the item's
lines out instead, and fall back to a plain dump only if the cut would not
yield exactly the remaining models.
"""
from __future__ import annotations

import yaml

from pickwise.registry.yaml_source import parse_yaml


def _last_line(node: yaml.Node) -> int:
    """0-based last line holding text of this node (block scalars end at column 0 of the next line)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        end = node.end_mark
        return end.line if end.column > 0 else end.line - 1
    children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    return max((_last_line(c) for c in children), default=node.start_mark.line)


def _comment_block_start(lines: list[str], line: int) -> int:
    """First line of the run of comment lines directly above `line` (no blank line between)."""
    while line > 0 and lines[line - 1].lstrip().startswith("#"):
        line -= 1
    return line


def _as_list_item(text: str) -> str:
    """A one-model YAML text (a mapping, or a one-item list) as an item of a block list."""
    data = parse_yaml(text).data
    if isinstance(data, list):
        return text.rstrip() + "\n"
    lines = [line for line in text.rstrip().splitlines()]
    body = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    if not body:
        return text
    first = body[0]
    out = lines[:first] + ["- " + lines[first]] + ["  " + line if line.strip() else line for line in lines[first + 1:]]
    return "\n".join(out) + "\n"


def replace_list_item(text: str, index: int, new_item: str) -> str:
    """The file text with item `index` of its top-level list (and the comments just above it) replaced
    by the model in `new_item` (its own text, comments kept), appended at the end of the list."""
    items = parse_yaml(text).data
    remaining = remove_list_item(text, index)
    expected = items[:index] + items[index + 1:] + [_only_model(parse_yaml(new_item).data)]
    return _checked(remaining.rstrip() + "\n\n" + _as_list_item(new_item), expected)


def _checked(candidate: str, expected) -> str:
    """`candidate` if it reads back as exactly `expected`, else a plain dump of `expected` (comments lost,
    data right)."""
    try:
        if parse_yaml(candidate).data == expected:
            return candidate
    except ValueError:
        pass
    return yaml.safe_dump(expected, sort_keys=False, allow_unicode=True)


def _only_model(data):
    return data[0] if isinstance(data, list) else data


def remove_list_item(text: str, index: int) -> str:
    """The file text without item `index` of its top-level list (and the comments just above it)."""
    parsed = parse_yaml(text)
    items = parsed.data
    if not isinstance(items, list) or not 0 <= index < len(items):
        raise ValueError(f"no list item #{index + 1} in this file")
    remaining = items[:index] + items[index + 1:]
    nodes = parsed.node.value
    lines = text.splitlines(keepends=True)
    if index == 0:
        # Comments just above the first item are its own, unless they open the file: then they are the header.
        start = _comment_block_start(lines, nodes[0].start_mark.line)
        start = nodes[0].start_mark.line if start == 0 else start
    else:
        start = _last_line(nodes[index - 1]) + 1
    end = _last_line(nodes[index]) + 1
    return _checked("".join(lines[:start] + lines[end:]), remaining)
