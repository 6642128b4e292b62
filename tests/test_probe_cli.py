"""`pickwise probe export|score|check` end to end on temporary files."""
from __future__ import annotations

import csv
import json

from pickwise.api.cli.main import main
from pickwise.registry import load_registry
from pickwise.registry.probes.probe_set import load_probe_set
from tests.registry_samples import model, write

ENTRIES = load_probe_set()
GRADABLE = [e for e in ENTRIES if e.gradable]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_jsonl_and_csv(tmp_path, capsys):
    code, _, err = run(capsys, "probe", "export", "--output", tmp_path / "p.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert code == 0 and f"wrote {len(ENTRIES)} probe prompts (jsonl)" in err
    assert rows[0] == {"prompt_id": ENTRIES[0].prompt_id, "prompt": ENTRIES[0].prompt, "choices": ENTRIES[0].choices}
    assert [r["prompt_id"] for r in rows] == [e.prompt_id for e in ENTRIES]
    assert "reference" not in rows[0]  # the file is shown to the model under test

    code, _, _ = run(capsys, "probe", "export", "--output", tmp_path / "p.csv", "--gradable-only")
    with open(tmp_path / "p.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert code == 0 and len(table) == len(GRADABLE) and table[0]["prompt"] == GRADABLE[0].prompt

    code, out, _ = run(capsys, "probe", "export", "--output", "-", "--format", "csv")
    assert code == 0 and out.startswith("prompt_id,prompt,choices\n")


def write_responses(path, answers: dict[str, str]) -> None:
    path.write_text("".join(json.dumps({"prompt_id": p, "response": r}) + "\n" for p, r in answers.items()))


def test_score_then_register_round_trip(tmp_path, capsys):
    wrong = {e.reference: next(c for c in e.choices if c != e.reference) for e in GRADABLE}
    answers = {e.prompt_id: (f"The answer is ({e.reference})" if i % 4 else f"Answer: {wrong[e.reference]}")
               for i, e in enumerate(GRADABLE)}
    ungraded = [e for e in ENTRIES if not e.gradable][:7]
    answers.update({e.prompt_id: "42" for e in ungraded})
    write_responses(tmp_path / "responses.jsonl", answers)
    code, _, err = run(capsys, "probe", "score", "--responses", tmp_path / "responses.jsonl",
                       "--output", tmp_path / "results.csv")
    assert code == 0
    expected_acc = sum(1 for i in range(len(GRADABLE)) if i % 4) / len(GRADABLE)
    assert f"scored {len(GRADABLE)} responses (accuracy {expected_acc:.3f}); skipped 7 without a reference" in err
    with open(tmp_path / "results.csv", newline="") as fh:
        results = {r["prompt_id"]: float(r["score"]) for r in csv.DictReader(fh)}
    assert results == {e.prompt_id: float(i % 4 != 0) for i, e in enumerate(GRADABLE)}
    code, out, err = run(capsys, "probe", "score", "--responses", tmp_path / "responses.jsonl", "--output", "-")
    assert code == 0 and out.startswith("prompt_id,score\n")  # to stdout; the summary names no file "-"
    assert "add them to the results if you can)" in err and "wrote -" not in err

    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "results.csv").write_bytes((tmp_path / "results.csv").read_bytes())
    write(registry, "new.yaml", model("newbie", probe={"results": "results.csv"}))
    code, out, _ = run(capsys, "probe", "check", registry / "new.yaml")
    assert code == 0 and f"newbie: {len(GRADABLE)} probe results, mean score {expected_acc:.3f}" in out
    assert load_registry(registry).probe_scores("newbie") == results


def test_score_reports_every_bad_line(tmp_path, capsys):
    first = GRADABLE[0].prompt_id
    (tmp_path / "r.jsonl").write_text(
        f'{{"prompt_id": "{first}", "response": "A"}}\n'
        "not json\n"
        '{"prompt_id": "ghost", "response": "A"}\n'
        f'{{"prompt_id": "{first}", "response": "B"}}\n'
        f'{{"prompt_id": "{GRADABLE[1].prompt_id}", "response": null}}\n'
        "[1]\n"
    )
    code, _, err = run(capsys, "probe", "score", "--responses", tmp_path / "r.jsonl", "--output", tmp_path / "o.csv")
    assert code == 2 and not (tmp_path / "o.csv").exists()
    assert "line 2: not valid JSON" in err
    assert "line 3: prompt_id 'ghost' is not in the probe set" in err
    assert f"line 4: duplicate prompt_id '{first}' (first on line 1)" in err
    assert 'line 5: field "response": expected a string, got None' in err
    assert "line 6: expected an object" in err


def test_score_with_nothing_gradable_or_missing_file(tmp_path, capsys):
    ungraded = [e for e in ENTRIES if not e.gradable][:3]
    write_responses(tmp_path / "r.jsonl", {e.prompt_id: "x" for e in ungraded})
    code, _, err = run(capsys, "probe", "score", "--responses", tmp_path / "r.jsonl", "--output", tmp_path / "o.csv")
    assert code == 2 and "none of the 3 responses is to a gradable prompt" in err
    code, _, err = run(capsys, "probe", "score", "--responses", tmp_path / "nope.jsonl", "--output", tmp_path / "o.csv")
    assert code == 2 and "cannot read responses" in err


def test_score_warns_below_the_registry_minimum(tmp_path, capsys):
    write_responses(tmp_path / "r.jsonl", {e.prompt_id: e.reference for e in GRADABLE[:10]})
    code, _, err = run(capsys, "probe", "score", "--responses", tmp_path / "r.jsonl", "--output", tmp_path / "o.csv")
    assert code == 0 and "accuracy 1.000" in err and "at least 50 probe results; these are 10" in err


def test_check_reports_priors_and_errors(tmp_path, capsys):
    path = write(tmp_path, "m.yaml", [
        model("prior", probe={"benchmark_score": 0.6}),
        model("lookalike", probe={"similar_to": "gpt-4-1106-preview"}),
        model("sibling", probe={"similar_to": "prior"}),
        model("plain"),
    ])
    code, out, _ = run(capsys, "probe", "check", path)
    assert code == 0
    assert "prior: no probe results: prior from benchmark_score 0.6 (low-confidence)" in out
    assert "lookalike: no probe results: prior from similar_to 'gpt-4-1106-preview'" in out
    assert "plain: no probe section: scored as an average model" in out

    path = write(tmp_path, "bad.yaml", [
        model("ghostly", probe={"similar_to": "ghost"}),
        model("few", probe={"results": [{"prompt_id": ENTRIES[0].prompt_id, "score": 1}]}),
    ])
    code, _, err = run(capsys, "probe", "check", path)
    assert code == 2
    assert "model 'ghostly': field 'probe.similar_to': similar_to 'ghost' is not a model of this file" in err
    assert "model 'few': field 'probe.results': only 1 result(s)" in err
    assert "bad.yaml: probe section invalid:" in err
    path = write(tmp_path, "limits.yaml", model("big", max_output_tokens=64000, context_window=32000))
    code, _, err = run(capsys, "probe", "check", path)  # not a probe problem: not called one
    assert code == 2 and "limits.yaml: invalid:" in err and "exceeds context_window" in err


def test_score_keeps_answer_lengths_given_with_the_responses(tmp_path, capsys):
    """A responses line may give its answer's output_tokens: graded rows keep it, ungradable ones
    become length-only rows, and a bad value is named with its line."""
    ungraded = [e for e in ENTRIES if not e.gradable][:3]
    lines = [{"prompt_id": e.prompt_id, "response": f"({e.reference})", "output_tokens": 3} for e in GRADABLE[:60]]
    lines += [{"prompt_id": e.prompt_id, "response": "a long essay", "output_tokens": 700} for e in ungraded]
    lines += [{"prompt_id": GRADABLE[60].prompt_id, "response": "(A)"}]  # no length given
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    code, _, err = run(capsys, "probe", "score", "--responses", tmp_path / "r.jsonl", "--output", tmp_path / "o.csv")
    assert code == 0 and "63 answer lengths (output_tokens) kept" in err
    with open(tmp_path / "o.csv", newline="") as fh:
        rows = {r["prompt_id"]: (r["score"], r["output_tokens"]) for r in csv.DictReader(fh)}
    assert rows[GRADABLE[0].prompt_id] == ("1", "3") and rows[ungraded[0].prompt_id] == ("", "700")
    assert rows[GRADABLE[60].prompt_id][1] == "" and len(rows) == 64

    (tmp_path / "bad.jsonl").write_text(json.dumps({**lines[0], "output_tokens": -1}) + "\n")
    code, _, err = run(capsys, "probe", "score", "--responses", tmp_path / "bad.jsonl", "--output", tmp_path / "b.csv")
    assert code == 2 and "line 1: output_tokens -1 is outside [0, 1,000,000,000]" in err


def test_score_refuses_to_write_over_its_responses(tmp_path, capsys):
    """`--output` naming the responses file replaced the model's answers with their scores."""
    responses = tmp_path / "responses.jsonl"
    gradable = next(e for e in load_probe_set() if e.gradable)
    text = json.dumps({"prompt_id": gradable.prompt_id, "response": "A"}) + "\n"
    responses.write_text(text)
    assert main(["probe", "score", "--responses", str(responses), "--output", str(responses)]) == 2
    assert "is the --responses file; writing there would replace the input" in capsys.readouterr().err
    assert responses.read_text() == text


def test_check_says_a_trained_model_keeps_its_trained_vector(tmp_path, capsys):
    # a shipped model overridden (models add --replace) with probe results, or under an alias of a trained
    # name, is still scored from the predictor's trained vector: saying "N probe results" misled
    results = [{"prompt_id": e.prompt_id, "score": float(i % 2)} for i, e in enumerate(GRADABLE[:60])]
    path = write(tmp_path, "m.yaml", [
        model("gemini-1.5-flash-002", probe={"results": results}),
        model("my-proxy", aliases=["gpt-4-1106-preview"]),
    ])
    code, out, _ = run(capsys, "probe", "check", path)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("gemini-1.5-flash-002: 60 probe results") and "trained vector" in lines[0]
    assert "not from these probe results" in lines[0]
    assert lines[1].startswith("my-proxy: ") and "the trained vector of 'gpt-4-1106-preview'" in lines[1]
    assert "average model" not in lines[1]
