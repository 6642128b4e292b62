"""PyYAML's node tree (what the registry reads with) against ruamel.yaml's round-trip loader.

Prints what each says of a duplicate key, how each reads `yes` and `010`, parse times on the
largest shipped registry file, and what a comment-preserving removal keeps. The decision it fed
is docs/decisions/yaml-parser.md.

Run: .venv/bin/python -m bench.yaml_parsers
"""
from __future__ import annotations

import io
import statistics
import time

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError

from pickwise.registry import default_registry_dir
from pickwise.registry.yaml_edit import remove_list_item
from pickwise.registry.yaml_source import YamlSyntaxError, parse_yaml

DUPLICATE = "name: a\npricing: 1\nx: 2\npricing: 3\n"
MEANING = "enabled: yes\nn: 010\n"
COMMENTED = ("# header\n\n# first model\n- name: a\n  x: 1\n\n# second model: its prices\n- name: b\n  x: 2\n\n"
             "# third\n- name: c\n  x: 3\n")


def median_ms(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    try:
        parse_yaml(DUPLICATE)
    except YamlSyntaxError as exc:
        print(f"duplicate key, pickwise: line {exc.line}: {exc}")
    try:
        YAML().load(DUPLICATE)
    except DuplicateKeyError as exc:
        print("duplicate key, ruamel:", " ".join(str(exc).split())[:200])
    print("meaning, PyYAML:", yaml.safe_load(MEANING), " ruamel:", dict(YAML().load(MEANING)))
    text = (default_registry_dir() / "open-weights-together.yaml").read_text()
    print(f"parse ms (median of 5): PyYAML node tree {median_ms(lambda: yaml.SafeLoader(text).get_single_node()):.1f}, "
          f"ruamel round-trip {median_ms(lambda: YAML().load(text)):.1f}")
    data = YAML().load(COMMENTED)
    del data[1]
    out = io.StringIO()
    YAML().dump(data, out)
    print("--- remove item 2, ruamel round-trip:\n" + out.getvalue())
    print("--- remove item 2, registry/yaml_edit.py:\n" + remove_list_item(COMMENTED, 1))


if __name__ == "__main__":
    main()
