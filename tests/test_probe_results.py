"""Probe results in a registry YAML: CSV, JSONL and inline round-trips, and every error they can raise."""
from __future__ import annotations

import json

import pytest

from pickwise.registry import RegistryError, load_registry
from pickwise.registry.probes.results import MIN_PROBE_RESULTS
from tests.registry_samples import IDS, csv_text, jsonl_text, model, scores, write


def load_error(directory) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        load_registry(directory)
    return info.value


def test_csv_jsonl_and_inline_results_round_trip(tmp_path):
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "a.csv").write_text(csv_text(scores(60)))
    (tmp_path / "b.jsonl").write_text(jsonl_text(scores(80, offset=100)))
    inline = [{"prompt_id": p, "score": s} for p, s in scores(50, offset=300).items()]
    write(tmp_path, "m.yaml", [
        model("a", probe={"results": "probes/a.csv"}),
        model("b", probe={"results": "b.jsonl", "benchmark_score": 0.5}),
        model("c", probe={"results": inline}),
    ])
    snap = load_registry(tmp_path)
    assert snap.probe_scores("a") == scores(60)
    assert snap.probe_scores("b") == scores(80, offset=100)
    assert snap.probe_scores("c") == scores(50, offset=300)


def test_results_file_is_part_of_the_registry_version(tmp_path):
    write(tmp_path, "m.yaml", model("a", probe={"results": "a.csv"}))
    (tmp_path / "a.csv").write_text(csv_text(scores(60)))
    before = load_registry(tmp_path).version
    (tmp_path / "a.csv").write_text(csv_text({**scores(60), IDS[0]: 0.25}))
    assert load_registry(tmp_path).version != before


def test_csv_tolerates_bom_crlf_extra_columns_and_absolute_paths(tmp_path):
    rows = "".join(f"{p},{s},{'yes' if s else 'no'}\r\n" for p, s in scores(60).items())
    path = tmp_path / "sub" / "a.csv"
    path.parent.mkdir()
    path.write_bytes(("\ufeffprompt_id, score ,note\r\n" + rows).encode())
    write(tmp_path, "m.yaml", model("a", probe={"results": str(path)}))
    assert load_registry(tmp_path).probe_scores("a") == scores(60)


@pytest.mark.parametrize("probe", [{"benchmark_score": 0.7}, {"similar_to": "base"}])
def test_prior_without_results_is_valid(tmp_path, probe):
    write(tmp_path, "m.yaml", [model("base"), model("new", probe=probe)])
    assert load_registry(tmp_path).probe_scores("new") is None


def test_empty_probe_section_is_an_error(tmp_path):
    write(tmp_path, "m.yaml", model("new", probe={}))
    err = load_error(tmp_path)
    assert (err.model, err.field) == ("new", "probe")
    assert "the probe section is empty: give results, benchmark_score or similar_to" in str(err)


def file_error(tmp_path, name: str, content: str | bytes | None) -> RegistryError:
    """The error of a model whose results file `name` holds `content` (None: no such file)."""
    if isinstance(content, str):
        (tmp_path / name).write_text(content)
    elif isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    write(tmp_path, "m.yaml", model("new", probe={"results": name}))
    err = load_error(tmp_path)
    assert (err.file, err.model, err.field) == (tmp_path / "m.yaml", "new", "probe.results")
    return err


@pytest.mark.parametrize("name, content, message", [
    ("gone.csv", None, "gone.csv: results file not found at "),
    ("r.txt", "prompt_id,score\n", "r.txt: unsupported results format '.txt': expected .csv"),
    ("r.csv", "", "r.csv: results file is empty"),
    ("r.csv", b"prompt_id,score\n\xff,1\n", "r.csv: not UTF-8 text (byte 16)"),
    ("r.csv", "id,value\nx,1\n", "r.csv:1: header 'id,value' lacks column(s) prompt_id, score"),
    ("r.csv", "prompt_id\nx\n", "r.csv:1: header 'prompt_id' lacks column(s) score"),
    ("r.csv", f"prompt_id,score\n{IDS[0]},high\n", "r.csv:2: score 'high' is not a number"),
    ("r.csv", f"prompt_id,score\n{IDS[0]},1\n{IDS[1]},1.5\n", "r.csv:3: score '1.5' is outside [0, 1]"),
    ("r.csv", f"prompt_id,score\n{IDS[0]},-0.1\n", "r.csv:2: score '-0.1' is outside [0, 1]"),
    ("r.csv", f"prompt_id,score\n{IDS[0]},nan\n", "r.csv:2: score 'nan' is outside [0, 1]"),
    ("r.csv", f"prompt_id,score\n{IDS[0]}\n", "r.csv:2: score None is not a number"),
    ("r.csv", f"prompt_id,score\n{IDS[0]},1,2\n", "r.csv:2: 3 cells for 2 header columns"),
    ("r.csv", "prompt_id,score\n ,1\n", "r.csv:2: prompt_id ' ' is not a non-empty string"),
    ("r.jsonl", '{"prompt_id": "x", "score": 1}\n{"prompt_id": "y",\n', "r.jsonl:2: not valid JSON"),
    ("r.jsonl", "[1, 2]\n", "r.jsonl:1: expected an object"),
    ("r.jsonl", '{"prompt_id": "x"}\n', "r.jsonl:1: missing key(s) score"),
    ("r.jsonl", f'{{"prompt_id": "{IDS[0]}", "score": "0.5"}}\n', "r.jsonl:1: score '0.5' is not a number"),
    ("r.jsonl", f'{{"prompt_id": "{IDS[0]}", "score": true}}\n', "r.jsonl:1: score True is not a number"),
    ("r.jsonl", f'{{"prompt_id": "{IDS[0]}", "score": 2}}\n', "r.jsonl:1: score 2 is outside [0, 1]"),
    ("r.jsonl", '{"prompt_id": 7, "score": 1}\n', "r.jsonl:1: prompt_id 7 is not a non-empty string"),
])
def test_unreadable_results_files(tmp_path, name, content, message):
    assert message in str(file_error(tmp_path, name, content))


def test_every_bad_row_is_reported_up_to_a_limit(tmp_path):
    rows = "".join(f"{p},x\n" for p in IDS[:30])
    err = file_error(tmp_path, "r.csv", "prompt_id,score\n" + rows)
    assert len(err.errors) == 11 and "r.csv:2: score 'x'" in str(err) and "... and 20 more bad rows" in str(err)


def test_unknown_prompt_ids_are_listed(tmp_path):
    rows = {**scores(60), "nope-1": 1, "nope-2": 0, "nope-3": 1, "nope-4": 0, "nope-5": 1, "nope-6": 1}
    err = file_error(tmp_path, "r.csv", csv_text(rows))
    text = str(err)
    assert "6 prompt id(s) are not in the probe set: 'nope-1' (r.csv:62), 'nope-2' (r.csv:63)" in text
    assert "... and 1 more" in text and "pickwise probe export" in text


def test_duplicate_prompt_ids_name_both_lines(tmp_path):
    rows = jsonl_text(scores(60)) + json.dumps({"prompt_id": IDS[3], "score": 1}) + "\n"
    err = file_error(tmp_path, "r.jsonl", rows)
    assert f"duplicate prompt id(s): '{IDS[3]}' (r.jsonl:4 and r.jsonl:61)" in str(err)


def test_fewer_than_the_minimum_results(tmp_path):
    err = file_error(tmp_path, "r.csv", csv_text(scores(MIN_PROBE_RESULTS - 1)))
    assert f"only {MIN_PROBE_RESULTS - 1} result(s): at least {MIN_PROBE_RESULTS} of the {len(IDS)} probe prompts" in str(err)


def test_exactly_the_minimum_is_accepted(tmp_path):
    (tmp_path / "r.csv").write_text(csv_text(scores(MIN_PROBE_RESULTS)))
    write(tmp_path, "m.yaml", model("new", probe={"results": "r.csv"}))
    assert len(load_registry(tmp_path).probe_scores("new")) == MIN_PROBE_RESULTS


def test_inline_errors_name_the_row(tmp_path):
    inline = [{"prompt_id": p, "score": s} for p, s in scores(55).items()]
    inline[7] = {"prompt_id": "ghost", "score": 1.0}
    inline[9] = {"prompt_id": IDS[0], "score": 0.0}
    write(tmp_path, "m.yaml", model("new", probe={"results": inline}))
    text = str(load_error(tmp_path))
    assert "model 'new': field 'probe.results': 1 prompt id(s) are not in the probe set: 'ghost' (results[7])" in text
    assert f"duplicate prompt id(s): '{IDS[0]}' (results[0] and results[9])" in text


def test_inline_score_out_of_range_is_caught_with_its_line(tmp_path):
    inline = [{"prompt_id": p, "score": s} for p, s in scores(55).items()]
    inline[2]["score"] = 1.5
    write(tmp_path, "m.yaml", model("new", probe={"results": inline}))
    issue = next(e for e in load_error(tmp_path).errors if e.field == "probe.results[2].score")
    assert "expected a number <= 1, got 1.5" in issue.message and issue.line is not None


def test_errors_of_several_models_are_all_reported(tmp_path):
    write(tmp_path, "m.yaml", [model("a", probe={"results": "a.csv"}), model("b", probe={"results": "b.jsonl"})])
    err = load_error(tmp_path)
    assert [(e.model, e.field) for e in err.errors] == [("a", "probe.results"), ("b", "probe.results")]


def lengths(ids: list[str]) -> dict[str, int]:
    return {pid: 10 + 7 * i for i, pid in enumerate(ids)}


def test_output_tokens_column_round_trips_with_length_only_rows(tmp_path):
    """Lengths ride along in CSV, JSONL and inline rows; a row may give a length without a score."""
    graded, extra = scores(60), IDS[200:205]
    n = lengths(list(graded) + extra)
    csv_rows = "".join(f"{p},{graded.get(p, '')},{n[p]}\n" for p in n)
    (tmp_path / "a.csv").write_text("prompt_id,score,output_tokens\n" + csv_rows)
    (tmp_path / "b.jsonl").write_text("".join(
        json.dumps({"prompt_id": p, **({"score": graded[p]} if p in graded else {"score": None}), "output_tokens": n[p]})
        + "\n" for p in n))
    inline = [{"prompt_id": p, **({"score": graded[p]} if p in graded else {}), "output_tokens": n[p]} for p in n]
    write(tmp_path, "m.yaml", [model("a", probe={"results": "a.csv"}), model("b", probe={"results": "b.jsonl"}),
                               model("c", probe={"results": inline}), model("old", probe={"results": "old.csv"})])
    (tmp_path / "old.csv").write_text(csv_text(graded))  # a file from before the column: still loads
    snap = load_registry(tmp_path)
    for name in "abc":
        assert snap.probe_scores(name) == graded and snap.probe_lengths(name) == n
    assert snap.probe_scores("old") == graded and snap.probe_lengths("old") is None


@pytest.mark.parametrize("name, content, message", [
    ("r.csv", f"prompt_id,score,output_tokens\n{IDS[0]},1,12.5\n", "r.csv:2: output_tokens '12.5' is not a whole number"),
    ("r.csv", f"prompt_id,score,output_tokens\n{IDS[0]},1,7\n{IDS[1]},0,-3\n", "r.csv:3: output_tokens '-3' is not a whole"),
    ("r.csv", f"prompt_id,score,output_tokens\n{IDS[0]},1,many\n", "r.csv:2: output_tokens 'many' is not a whole number"),
    ("r.csv", f"prompt_id,score,output_tokens\n{IDS[0]},,\n", "r.csv:2: score '' is not a number"),
    ("r.csv", f"prompt_id,score,output_tokens\n{IDS[0]},1,9999999999999\n", "r.csv:2: output_tokens '9999999999999' is outside"),
    ("r.jsonl", f'{{"prompt_id": "{IDS[0]}", "score": 1, "output_tokens": "12"}}\n', "r.jsonl:1: output_tokens '12' is not a whole"),
    ("r.jsonl", f'{{"prompt_id": "{IDS[0]}", "score": 1, "output_tokens": 12.0}}\n', "r.jsonl:1: output_tokens 12.0 is not a whole"),
    ("r.jsonl", f'{{"prompt_id": "{IDS[0]}", "score": 1, "output_tokens": true}}\n', "r.jsonl:1: output_tokens True is not a whole"),
    ("r.jsonl", f'{{"prompt_id": "{IDS[0]}", "output_tokens": null}}\n', "r.jsonl:1: missing key(s) score"),
])
def test_bad_output_tokens_are_named_with_file_and_line(tmp_path, name, content, message):
    assert message in str(file_error(tmp_path, name, content))


def test_length_only_rows_do_not_count_towards_the_minimum(tmp_path):
    rows = scores(MIN_PROBE_RESULTS - 1)
    text = "prompt_id,score,output_tokens\n" + "".join(f"{p},{s},5\n" for p, s in rows.items()) \
        + "".join(f"{p},,5\n" for p in IDS[300:310])
    err = file_error(tmp_path, "r.csv", text)
    assert f"only {MIN_PROBE_RESULTS - 1} result(s) with a score (10 give only a length)" in str(err)


def test_inline_row_needs_a_score_or_a_length(tmp_path):
    inline = [{"prompt_id": p, "score": s} for p, s in scores(55).items()] + [{"prompt_id": IDS[100]}]
    write(tmp_path, "m.yaml", model("new", probe={"results": inline}))
    assert "a result needs a score, output_tokens or both" in str(load_error(tmp_path))


def test_answer_lengths_above_the_models_max_output_tokens_are_named(tmp_path, capsys):
    """As import and feedback refuse an outcome longer than its model may answer, probe results do: a
    length above max_output_tokens (1,024 here) was no call's answer, and the length fit would learn it.
    Every loader of probe results says so: the registry, and `probe check` before `models add`."""
    graded = scores(60)
    text = "prompt_id,score,output_tokens\n" + "".join(f"{p},{s},{5000 if i in (3, 7) else 1024}\n"
                                                       for i, (p, s) in enumerate(graded.items()))
    (tmp_path / "r.csv").write_text(text)
    write(tmp_path, "m.yaml", model("a", probe={"results": "r.csv"}))
    message = str(load_error(tmp_path))
    assert ("2 answer length(s) above a's max_output_tokens (1,024): 5,000 (r.csv:5), 5,000 (r.csv:9)"
            in message), message
    inline = [{"prompt_id": p, "score": s, "output_tokens": 2048 if i == 0 else 10} for i, (p, s) in enumerate(graded.items())]
    write(tmp_path, "m.yaml", model("a", probe={"results": inline}))
    assert "1 answer length(s) above a's max_output_tokens (1,024): 2,048 (results[0])" in str(load_error(tmp_path))
    from pickwise.api.cli.main import main

    assert main(["probe", "check", str(tmp_path / "m.yaml")]) == 2
    assert "2,048 (results[0])" in capsys.readouterr().err
