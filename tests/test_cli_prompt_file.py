"""pickwise.api.cli.prompt_file: the shared JSONL prompt reader (pickwise predict, plan, universe)."""
from __future__ import annotations

import io
import json

import pytest

from pickwise.api.cli.prompt_file import PromptFileError, PromptRecord, read_prompt_file


def write(tmp_path, data: bytes | str, name: str = "p.jsonl") -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def test_reads_records_skipping_blank_lines_and_keeping_every_field(tmp_path):
    path = write(tmp_path, '{"id": "a", "prompt": "x"}\n\n  \n{"id": 7, "prompt": "y", "extra": 1}\n')
    records = read_prompt_file(path)
    assert records == [PromptRecord(1, "a", "x", {"id": "a", "prompt": "x"}),
                       PromptRecord(4, "7", "y", {"id": 7, "prompt": "y", "extra": 1})]


def test_a_line_separator_inside_a_prompt_does_not_split_the_line(tmp_path):
    text = "first\u2028second\u2029third\x85"
    path = write(tmp_path, json.dumps({"id": "a", "prompt": text}, ensure_ascii=False) + "\r\n")
    assert [r.prompt for r in read_prompt_file(path)] == [text]


def test_every_bad_line_is_reported_with_file_and_line(tmp_path):
    lines = [
        b'{"id": "ok", "prompt": "fine"}',
        b'{"id": "a", "prompt": "caf\xe9"}',
        b"{not json",
        b"[1, 2]",
        b'{"prompt": "no id"}',
        b'{"id": true, "prompt": "bool id"}',
        b'{"id": "b"}',
        b'{"id": "c", "prompt": 5}',
        b'{"id": "ok", "prompt": "again"}',
    ]
    path = write(tmp_path, b"\n".join(lines))
    with pytest.raises(PromptFileError) as err:
        read_prompt_file(path)
    assert err.value.problems == [
        f"{path}:2: not UTF-8 text (byte 26)",
        f"{path}:3: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        f'{path}:4: expected an object {{"id": ..., "prompt": ...}}, got list',
        f"{path}:5: missing or invalid 'id' (a string or integer), got None",
        f"{path}:6: missing or invalid 'id' (a string or integer), got True",
        f"{path}:7: missing 'prompt' (a string)",
        f"{path}:8: 'prompt' must be a string, got int",
        f"{path}:9: duplicate id 'ok' (first on line 1)",
    ]
    assert str(err.value).startswith(f"{path}: bad input lines:\n  {path}:2: ")


def test_long_error_lists_are_cut_with_a_count(tmp_path):
    path = write(tmp_path, "\n".join("{bad" for _ in range(25)))
    with pytest.raises(PromptFileError) as err:
        read_prompt_file(path)
    assert len(err.value.problems) == 25
    message = str(err.value)
    assert f"{path}:20: not valid JSON" in message and f"{path}:21:" not in message
    assert message.endswith("... and 5 more")


def test_parse_hook_builds_items_and_its_errors_get_file_and_line(tmp_path):
    path = write(tmp_path, '{"id": "a", "n": 2}\n{"id": "b", "n": -1}\n{"id": "c", "prompt": "p"}\n')

    def parse(record: PromptRecord) -> tuple[str, int]:
        n = record.fields.get("n", 0)
        if n < 0:
            raise ValueError(f"'n' must be >= 0, got {n}")
        return record.id, n

    with pytest.raises(PromptFileError) as err:
        read_prompt_file(path, require_prompt=False, parse=parse)
    assert err.value.problems == [f"{path}:2: 'n' must be >= 0, got -1"]
    path = write(tmp_path, '{"id": "a", "n": 2}\n{"id": "c", "prompt": "p"}\n')
    assert read_prompt_file(path, require_prompt=False, parse=parse) == [("a", 2), ("c", 0)]


def test_stdin_and_unreadable_paths(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"id": "s", "prompt": "from stdin"}\n')))
    assert [r.prompt for r in read_prompt_file("-")] == ["from stdin"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b'{"id": "s"}\n')))
    with pytest.raises(PromptFileError, match=r"<stdin>:1: missing 'prompt'"):
        read_prompt_file("-")
    with pytest.raises(PromptFileError, match=r"missing\.jsonl: cannot read input \(No such file or directory\)"):
        read_prompt_file(str(tmp_path / "missing.jsonl"))


def test_a_lone_surrogate_escape_is_a_bad_line_not_a_traceback(tmp_path):
    """"\\ud800" is valid JSON but no character: the tokenizer raised a TypeError on it."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prompt": "abc \\ud800 def"}\n{"id": "b", "prompt": "fine \\ud83d\\ude00"}\n'
                    '{"id": "c", "prompt": "x", "extra": {"\\udfff": 1}}\n')
    with pytest.raises(PromptFileError) as err:
        read_prompt_file(path)
    assert err.value.problems == [f"{path}:1: holds a lone surrogate ('\\ud800'), which is not text",
                                  f"{path}:3: holds a lone surrogate ('\\udfff'), which is not text"]


def test_a_utf8_byte_order_mark_and_crlf_line_ends_are_read(tmp_path):
    """Windows editors write both; the BOM made line 1 'not valid JSON'."""
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "prompt": "hi"}\r\n{"id": "b", "prompt": "there"}\r\n')
    assert [(r.id, r.prompt) for r in read_prompt_file(path)] == [("a", "hi"), ("b", "there")]


def test_json_nested_too_deeply_is_a_bad_line_not_a_traceback(tmp_path):
    # json.loads raises RecursionError past ~1,000 levels: predict, plan and probe files ended in a traceback
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prompt": "fine"}\n{"id": "b", "prompt": "x", "extra": ' + "[" * 100_000
                    + "]" * 100_000 + "}\n")
    with pytest.raises(PromptFileError) as err:
        read_prompt_file(path)
    assert err.value.problems == [f"{path}:2: not valid JSON (nested too deeply)"]
