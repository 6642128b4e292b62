"""`pickwise models ...` through api.cli.main: exit codes and what a person reads."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pickwise.api.cli.main import main
from pickwise.registry import load_registry
from tests.registry_samples import csv_text, make_registry, model, scores, write


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_table_and_json(tmp_path, capsys):
    make_registry(tmp_path)
    code, out, _ = run(capsys, "models", "list", "--registry", str(tmp_path))
    assert code == 0
    header, first = out.splitlines()[:2]
    assert header.split() == ["NAME", "PROVIDER", "$/M", "IN", "$/M", "OUT", "TTFT", "ms", "CONTEXT", "ENABLED"]
    assert first.split() == ["alpha", "acme", "1", "2", "300", "8,192", "yes"]
    code, out, _ = run(capsys, "models", "list", "--json", "--registry", str(tmp_path))
    data = json.loads(out)
    assert code == 0 and [m["name"] for m in data["models"]] == ["alpha", "beta", "gamma/large"]


def test_list_default_registry(capsys):
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "gpt-4-1106-preview" in out


def test_show_by_alias_prints_yaml(tmp_path, capsys):
    make_registry(tmp_path)
    code, out, _ = run(capsys, "models", "show", "a1", "--registry", str(tmp_path))
    assert code == 0 and yaml.safe_load(out)["name"] == "alpha"


def test_show_unknown_model(tmp_path, capsys):
    make_registry(tmp_path)
    code, out, err = run(capsys, "models", "show", "ghost", "--registry", str(tmp_path))
    assert code == 2 and "unknown model 'ghost'" in err and "Traceback" not in err


def test_validate_ok_and_default(tmp_path, capsys):
    make_registry(tmp_path)
    code, out, _ = run(capsys, "models", "validate", str(tmp_path))
    assert code == 0 and out.startswith("OK: 3 models, version ")
    code, out, _ = run(capsys, "models", "validate")
    assert code == 0 and out.startswith("OK: ")


def test_validate_of_the_user_registry_dir_reads_it_over_the_shipped_one(tmp_path, monkeypatch, capsys):
    """`models validate ~/.pickwise/registry` names the folder `serve` reads over the shipped models: a
    `similar_to` a shipped model is valid there, as it is for every command, not 'not a model name'."""
    home = tmp_path / "home"
    monkeypatch.setenv("PICKWISE_HOME", str(home))
    (home / "registry").mkdir(parents=True)
    write(home / "registry", "team.yaml", [model("team-coder", probe={"similar_to": "codegemma-7b"})])
    code, out, err = run(capsys, "models", "validate", str(home / "registry"))
    assert code == 0 and out.startswith("OK: ") and "not a model name" not in out, (out, err)
    other = make_registry(tmp_path / "alone")  # any other folder is still a whole registry on its own
    write(other, "team.yaml", [model("team-coder", probe={"similar_to": "codegemma-7b"})])
    code, out, _ = run(capsys, "models", "validate", str(other))
    assert code == 1 and "similar_to 'codegemma-7b' is not a model name" in out


def test_validate_broken_yaml_lists_every_error(tmp_path, capsys):
    make_registry(tmp_path)
    write(tmp_path, "broken.yaml", "- name: x\n  pricing: {input_per_million: 1\n")
    write(tmp_path, "neg.yaml", model("neg", pricing={"input_per_million": -1, "output_per_million": 1}))
    code, out, err = run(capsys, "models", "validate", str(tmp_path))
    assert code == 1
    assert "broken.yaml:" in out and "invalid YAML" in out
    assert "model 'neg': field 'pricing.input_per_million': expected a number >= 0, got -1" in out
    assert "2 error(s)" in err and "Traceback" not in err


def test_add_then_remove(tmp_path, capsys):
    reg = make_registry(tmp_path / "reg")
    new = write(tmp_path, "new.yaml", model("vendor/new"))
    code, out, _ = run(capsys, "models", "add", str(new), "--registry", str(reg))
    assert code == 0 and "added model 'vendor/new'" in out and (reg / "vendor_new.yaml").exists()
    code, out, err = run(capsys, "models", "add", str(new), "--registry", str(reg))
    assert code == 2 and "already taken" in err
    code, out, _ = run(capsys, "models", "remove", "vendor/new", "--registry", str(reg))
    assert code == 0 and "removed model 'vendor/new'" in out and "deleted" in out
    code, out, _ = run(capsys, "models", "remove", "beta", "--registry", str(reg))
    assert code == 0 and "rewrote" in out


def test_add_with_a_taken_alias_names_the_file_line_and_field(tmp_path, capsys):
    reg = make_registry(tmp_path / "reg")
    dup = tmp_path / "dupalias.yaml"
    dup.write_text(yaml.safe_dump(model("gamma", aliases=["g1", "a1"]), sort_keys=False))  # a1: alpha's alias
    line = next(i for i, text in enumerate(dup.read_text().splitlines(), 1) if text.strip() == "- a1")
    code, _, err = run(capsys, "models", "add", str(dup), "--registry", str(reg))
    assert code == 2 and f"{dup}:{line}: model 'gamma': field 'aliases[1]': 'a1' is already taken by model 'alpha'" in err
    assert "by model 'alpha' in registry file a.yaml" in err  # not the input file, whose name may be the same


def test_add_bad_input(tmp_path, capsys):
    reg = make_registry(tmp_path / "reg")
    code, _, err = run(capsys, "models", "add", str(tmp_path / "missing.yaml"), "--registry", str(reg))
    assert code == 2 and "cannot read" in err
    bad = write(tmp_path, "bad.json", json.dumps(model("b", context_window=-3)))
    code, _, err = run(capsys, "models", "add", str(bad), "--registry", str(reg))
    assert code == 2 and "field 'context_window': expected a number > 0, got -3" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",\n"provider": }')
    code, _, err = run(capsys, "models", "add", str(broken), "--registry", str(reg))
    assert code == 2 and f"{broken}:2: invalid JSON (column 13): Expecting value" in err  # file, line, column: as YAML
    two = write(tmp_path, "two.yaml", [model("t1"), model("t2")])
    code, _, err = run(capsys, "models", "add", str(two), "--registry", str(reg))
    assert code == 2 and f"{two}: add one model at a time (the input holds 2: 't1', 't2')" in err  # said which input
    assert "each in a file (or request) of its own" in err  # and what to do


def test_add_errors_name_the_users_file_never_the_registry_file_it_would_have_become(tmp_path, capsys):
    from pickwise.registry.probes.probe_set import load_probe_set

    reg = make_registry(tmp_path / "reg")
    bad = write(tmp_path, "bad.yaml", model("b", expected_output_tokens=10**6))
    code, _, err = run(capsys, "models", "add", str(bad), "--registry", str(reg))
    assert code == 2 and f"{bad}:" in err and "<new model>" not in err
    results = [{"prompt_id": e.prompt_id, "score": 1.0} for e in load_probe_set()[:60]] + [{"prompt_id": "ghost", "score": 0.0}]
    ghost = write(tmp_path, "ghost.yaml", model("g", probe={"results": results}))
    code, _, err = run(capsys, "models", "add", str(ghost), "--registry", str(reg))
    assert code == 2 and f"{ghost}: model 'g': field 'probe.results': 1 prompt id(s) are not in the probe set" in err
    assert "reg" + os.sep not in err and sorted(p.name for p in reg.iterdir()) == sorted(p.name for p in make_registry(tmp_path / "fresh").iterdir())


def test_remove_unknown_and_bad_registry(tmp_path, capsys):
    reg = make_registry(tmp_path / "reg")
    code, _, err = run(capsys, "models", "remove", "ghost", "--registry", str(reg))
    assert code == 2 and "unknown model 'ghost'" in err
    code, _, err = run(capsys, "models", "list", "--registry", str(tmp_path / "nowhere"))
    assert code == 2 and "registry directory not found" in err


class _ClosedPipe(io.StringIO):
    """A stdout whose reader has gone away: every write raises BrokenPipeError, as a closed pipe does."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_stdout_pipe_exits_quietly(tmp_path, monkeypatch, capsys):
    make_registry(tmp_path)
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["models", "list", "--registry", str(tmp_path)]) == 141
    assert capsys.readouterr().err == ""


def test_list_into_a_pipe_closed_before_writing_has_no_traceback(tmp_path):
    # The read end is closed before the child starts writing, so its first write must hit EPIPE
    # (output small enough to sit in a pipe buffer would never see `head` go away).
    make_registry(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "pickwise.api.cli.main", "models", "list", "--registry", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""


def test_add_reads_probe_results_relative_to_the_yaml_file(tmp_path, capsys, monkeypatch):
    reg = make_registry(tmp_path / "reg")
    (tmp_path / "src" / "probes").mkdir(parents=True)
    (tmp_path / "src" / "probes" / "p.csv").write_text(csv_text(scores(60)))
    new = write(tmp_path / "src", "p.yaml", model("probed", probe={"results": "probes/p.csv"}))
    monkeypatch.chdir(tmp_path)  # neither the registry's nor the YAML file's directory
    code, out, err = run(capsys, "models", "add", str(new), "--registry", str(reg))
    assert code == 0, err
    assert load_registry(reg).probe_scores("probed") == scores(60)


def test_add_replace_updates_a_model(tmp_path, capsys):
    registry = make_registry(tmp_path / "registry")
    path = write(tmp_path, "beta.yaml", model("beta", provider="newco"))
    assert main(["models", "add", str(path), "--registry", str(registry)]) == 2
    assert "--replace" in capsys.readouterr().err
    assert main(["models", "add", str(path), "--registry", str(registry), "--replace"]) == 0
    assert "replaced model 'beta'" in capsys.readouterr().out
    assert main(["models", "show", "beta", "--registry", str(registry)]) == 0
    assert "newco" in capsys.readouterr().out


def test_without_registry_models_go_to_the_user_registry_over_the_shipped_one(tmp_path, monkeypatch, capsys):
    from pickwise.registry import default_registry_dir

    home = tmp_path / "home"
    monkeypatch.setenv("PICKWISE_HOME", str(home))
    shipped = sorted(p.name for p in default_registry_dir().iterdir())
    mine = write(tmp_path, "mine.yaml", model("my-model"))
    assert main(["models", "add", str(mine)]) == 0
    assert (home / "registry" / "my-model.yaml").is_file()
    assert sorted(p.name for p in default_registry_dir().iterdir()) == shipped  # the package is never written
    capsys.readouterr()
    assert main(["models", "list", "--json"]) == 0
    rows = {m["name"]: m["source"] for m in json.loads(capsys.readouterr().out)["models"]}
    assert rows["my-model"] == "user" and rows["gpt-4-1106-preview"] == "shipped"
    assert main(["models", "show", "my-model"]) == 0
    # a shipped model is replaced only explicitly, and removing the replacement brings it back
    override = write(tmp_path, "gpt4.yaml", model("gpt-4-1106-preview", provider="my-proxy"))
    capsys.readouterr()
    assert main(["models", "add", str(override)]) == 2
    err = capsys.readouterr().err  # a shipped model cannot be removed: only --replace is the way
    assert "shipped" in err and "--replace" in err and "remove that model" not in err
    assert main(["models", "add", str(override), "--replace"]) == 0
    capsys.readouterr()
    assert main(["models", "show", "gpt-4-1106-preview"]) == 0
    assert "my-proxy" in capsys.readouterr().out
    assert main(["models", "remove", "gpt-4-1106-preview"]) == 0
    assert main(["models", "remove", "gpt-4-1106-preview"]) == 2  # the shipped one: cannot be removed
    assert "ships with pickwise" in capsys.readouterr().err
    assert main(["models", "remove", "my-model"]) == 0
    # --registry DIR is still the whole registry, on its own
    alone = make_registry(tmp_path / "alone")
    capsys.readouterr()
    assert main(["models", "list", "--json", "--registry", str(alone)]) == 0
    assert {m["source"] for m in json.loads(capsys.readouterr().out)["models"]} == {"registry"}


def test_a_price_typed_per_token_is_added_with_a_warning(tmp_path, capsys):
    # $3e-07 per million tokens is almost surely $0.30 per million typed per token: valid (free and
    # very cheap models exist), so added, but said
    make_registry(tmp_path / "reg")
    entry = model("acme-pertoken", pricing={"input_per_million": 3e-07, "output_per_million": 6e-07})
    code, out, err = run(capsys, "models", "add", str(write(tmp_path, "p.yaml", entry)), "--registry",
                         str(tmp_path / "reg"))
    assert code == 0 and "added model 'acme-pertoken'" in out
    assert "warning: model 'acme-pertoken': pricing.input_per_million 3e-07 is below $0.001 per million" in err
    assert "pricing.output_per_million 6e-07" in err and "$0.3 per million" in err
    code, out, err = run(capsys, "models", "validate", "--registry", str(tmp_path / "reg"))
    assert code == 0 and out.startswith("OK:") and err.count("warning:") == 2
    make_registry(tmp_path / "plain")
    code, _, err = run(capsys, "models", "validate", "--registry", str(tmp_path / "plain"))  # plausible prices
    assert code == 0 and "warning" not in err


def test_a_base_model_tag_spelled_otherwise_is_added_with_a_warning(tmp_path, capsys):
    """Tags match exactly: `Base-Model` silently left a pretrained-only model routed open-ended prompts."""
    make_registry(tmp_path / "reg")
    entry = model("acme-base", tags=["Base-Model", "base_model", "api"])
    code, out, err = run(capsys, "models", "add", str(write(tmp_path, "b.yaml", entry)), "--registry",
                         str(tmp_path / "reg"))
    assert code == 0 and "added model 'acme-base'" in out
    assert "warning: model 'acme-base': tag 'Base-Model' is not 'base-model' (tags are matched exactly)" in err
    assert "tag 'base_model' is not" in err and "'api'" not in err
    code, _, err = run(capsys, "models", "validate", "--registry", str(tmp_path / "reg"))
    assert code == 0 and err.count("warning:") == 2
    exact = write(tmp_path, "c.yaml", model("acme-base-2", tags=["base-model"]))
    assert run(capsys, "models", "add", str(exact), "--registry", str(tmp_path / "reg"))[2] == ""


def test_add_and_probe_check_read_a_model_from_stdin(tmp_path, capsys, monkeypatch):
    """The README says files given as `-` are stdin; `models add -` said "cannot read -: No such file"."""
    reg = make_registry(tmp_path / "reg")
    monkeypatch.chdir(tmp_path)  # probe.results paths in stdin's text are read from the working directory
    (tmp_path / "p.csv").write_text(csv_text(scores(60)))
    text = yaml.safe_dump(model("piped", probe={"results": "p.csv"}))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, out, _ = run(capsys, "probe", "check", "-", "--registry", str(reg))
    assert code == 0 and out.startswith("piped: ")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, out, err = run(capsys, "models", "add", "-", "--registry", str(reg))
    assert code == 0 and "added model 'piped'" in out, err
    assert load_registry(reg).get("piped").probe.results[0].prompt_id
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(model("json-piped")).encode())))
    assert run(capsys, "models", "add", "-", "--registry", str(reg))[0] == 0  # JSON is YAML too
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"name: \xff")))
    code, _, err = run(capsys, "models", "add", "-", "--registry", str(reg))
    assert code == 2 and "cannot read <stdin>: not UTF-8 text (byte 6)" in err


def test_errors_name_the_sub_command_with_its_own_usage(tmp_path, capsys):
    """`artifact status --json` said `pickwise: error: unrecognized arguments` under the top-level usage,
    and `models show ghost` said `pickwise models: error:`; both now name the command that was run."""
    with pytest.raises(SystemExit) as exit_:
        main(["models", "list", "--registry", str(tmp_path), "--bogus"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("usage: pickwise models list ")
    assert "pickwise models list: error: unrecognized arguments: --bogus" in err
    make_registry(tmp_path)
    code, _, err = run(capsys, "models", "show", "ghost", "--registry", str(tmp_path))
    assert code == 2 and err.startswith("pickwise models show: error: unknown model 'ghost'")
