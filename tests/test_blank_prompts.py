"""Every front door that takes a prompt's text refuses one that is empty or only whitespace, naming
the field (HTTP) or the file and line (CLI): the HTTP app, the CLI on real files, a real store."""
from __future__ import annotations

import json

import pytest

from pickwise.api.cli.main import main
from pickwise.registry.outcomes import store_exists
from tests.api_support import TOKEN, client, registry_with_alias

BLANK = "the prompt is empty or only whitespace"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def aliased(tmp_path):
    return registry_with_alias(tmp_path / "registry", "gpt-4-1106-preview", "gpt4")


@pytest.fixture
def api(aliased, tiny_predictor, tmp_path):
    with client(aliased, tiny_predictor, outcome_store=str(tmp_path / "outcomes.sqlite")) as c:
        yield c


def _refused(r, loc: list) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_error"
    assert [e["loc"] for e in body["errors"]] == [loc], body
    assert BLANK in body["detail"] and ".".join(map(str, loc)) in body["detail"], body


@pytest.mark.parametrize("prompt", [" \n\t ", ""])
def test_feedback_by_a_blank_prompt_is_422_on_prompt(api, tmp_path, prompt):
    r = api.post("/v1/feedback", json={"prompt": prompt, "model": "gpt4", "score": 1}, headers=AUTH)
    if prompt:  # "" was refused before (as too short): kept as it was
        _refused(r, ["body", "prompt"])
    assert r.status_code == 422
    assert not store_exists(tmp_path / "outcomes.sqlite") or api.get("/v1/outcomes/stats").json()["outcomes"] == 0


def test_predict_with_a_blank_prompt_is_422_naming_which(api):
    r = api.post("/v1/predict", json={"prompts": [{"id": "a", "prompt": "What is 2+2?"}, {"id": "b", "prompt": "  "}]})
    _refused(r, ["body", "prompts", 1, "prompt"])
    r = api.post("/v1/predict", json={"prompts": [{"id": "a", "prompt": ""}]})
    _refused(r, ["body", "prompts", 0, "prompt"])


def test_predict_cli_names_each_blank_line(tmp_path, aliased, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "prompt": "What is 2+2?"}, {"id": "b", "prompt": " \t"}, {"id": "c", "prompt": ""}]) + "\n")
    out = tmp_path / "q.jsonl"
    assert main(["predict", "--input", str(prompts), "--registry", str(aliased), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"prompts.jsonl:2: 'prompt': {BLANK}" in err and f"prompts.jsonl:3: 'prompt': {BLANK}" in err, err
    assert "prompts.jsonl:1" not in err and not out.exists()


def test_plan_cli_still_names_a_blank_line(tmp_path, aliased, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "   "}) + "\n")
    assert main(["plan", "--input", str(prompts), "--registry", str(aliased), "--budget", "1"]) == 2
    assert f"prompts.jsonl:1: 'prompt': {BLANK}" in capsys.readouterr().err


@pytest.mark.parametrize("suffix, text, where", [
    (".jsonl", json.dumps({"prompt": "x", "model": "gpt4", "score": 1}) + "\n"
     + json.dumps({"prompt": " \n ", "model": "gpt4", "score": 1}) + "\n", "line 2"),
    (".csv", 'prompt,model,score\nx,gpt4,1\n"  ",gpt4,0\n', "line 3"),
])
def test_outcomes_import_names_a_blank_prompts_row(tmp_path, aliased, capsys, suffix, text, where):
    source = tmp_path / f"outcomes{suffix}"
    source.write_text(text)
    store = tmp_path / "store.sqlite"
    assert main(["outcomes", "import", str(source), "--store", str(store), "--registry", str(aliased)]) == 2
    err = capsys.readouterr().err
    assert f"{where}: field 'prompt': {BLANK}" in err and "1 bad row(s), nothing stored" in err, err
    assert not store_exists(store)


INVISIBLE = ["\u200b\u200b\u200b", "\u200c", "\u200d \u2060", "\ufeff\n", "\u200b\u00ad\u2060"]


@pytest.mark.parametrize("prompt", INVISIBLE)
def test_a_prompt_of_format_characters_only_is_blank_everywhere(api, tmp_path, prompt):
    """Zero-width and other format (Cf) characters print nothing: such a prompt has no text either."""
    _refused(api.post("/v1/predict", json={"prompts": [{"id": "a", "prompt": prompt}]}),
             ["body", "prompts", 0, "prompt"])
    _refused(api.post("/v1/select", json={"prompt": prompt}), ["body", "prompt"])
    _refused(api.post("/v1/plan", json={"prompts": [{"id": "a", "prompt": "What is 2+2?"}, {"id": "b", "prompt": prompt}],
                                        "budget": 1.0}), ["body", "prompts", 1, "prompt"])
    _refused(api.post("/v1/feedback", json={"prompt": prompt, "model": "gpt4", "score": 1}, headers=AUTH),
             ["body", "prompt"])
    assert not store_exists(tmp_path / "outcomes.sqlite") or api.get("/v1/outcomes/stats").json()["outcomes"] == 0


def test_a_prompt_with_text_keeps_its_format_characters(api):
    r = api.post("/v1/predict", json={"prompts": [{"id": "a", "prompt": "\u200bWhat is 2+2?\ufeff"}]})
    assert r.status_code == 200, r.text


def test_predict_cli_names_a_line_of_format_characters(tmp_path, aliased, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "\u200b\u200b\u200b"}) + "\n")
    assert main(["predict", "--input", str(prompts), "--registry", str(aliased), "--output", str(tmp_path / "q.jsonl")]) == 2
    assert f"prompts.jsonl:1: 'prompt': {BLANK}" in capsys.readouterr().err
