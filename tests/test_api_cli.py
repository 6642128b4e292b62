"""`pickwise select` and `pickwise serve` argument handling (same service code as the API)."""
from __future__ import annotations

import json

import pytest

from pickwise.api.cli.main import main
from pickwise.predictor import inference as predictor_inference
from tests.api_support import (
    PROMPT,
    TRAINED,
    UNTRAINED,
)


def test_select_prints_a_table_with_the_chosen_model_first(registry_dir, tiny_loader, capsys):
    assert main(["select", PROMPT, "--registry", str(registry_dir), "--exclude", "Llama-2-7b-hf"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("chosen: ")
    table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("MODEL"))) + 1:]
    assert table[0].startswith("*")  # chosen row first
    assert "Llama-2-7b-hf" in out and "deny-list" in out
    assert all(name in out for name in (*TRAINED, UNTRAINED))
    assert "~" in out  # the model scored from a prior is marked
    assert main(["select", PROMPT, "--registry", str(registry_dir), "--models", UNTRAINED]) == 0
    chosen_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("*"))
    assert chosen_row.startswith("*~") and UNTRAINED in chosen_row  # chosen, and still marked low-confidence


def test_select_json_equals_the_api_response(registry_dir, tiny_loader, tiny_predictor, capsys):
    from tests.api_support import client

    assert main(["select", PROMPT, "--registry", str(registry_dir), "--json", "--max-models", "2",
                 "--objective", "max_quality"]) == 0
    cli = json.loads(capsys.readouterr().out)
    with client(registry_dir, tiny_predictor) as c:
        api = c.post("/v1/select", json={"prompt": PROMPT, "max_models": 2, "objective": "max_quality"}).json()
    assert cli["chosen"] == api["chosen"] and cli["quality"] == pytest.approx(api["quality"])
    assert [c["name"] for c in cli["candidates"]] == [c["name"] for c in api["candidates"]]


def test_infeasible_select_names_each_models_blocking_constraints(registry_dir, tiny_loader, capsys):
    code = main(["select", PROMPT, "--registry", str(registry_dir), "--max-cost-usd", "0", "--max-latency-ms", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "no model satisfies the constraints" in err
    for name in (*TRAINED, UNTRAINED):
        line = next(line for line in err.splitlines() if line.strip().startswith(name))
        assert "latency cap" in line and "cost cap" in line


def test_select_names_each_unknown_model_with_its_own_hint_and_the_cli_listing(registry_dir, tiny_loader, capsys):
    assert main(["select", PROMPT, "--registry", str(registry_dir), "--models", "gpt-4,Llama-2-7b-hf,llama-2-7b"]) == 2
    err = capsys.readouterr().err
    assert ("unknown model(s) 'gpt-4' (did you mean 'gpt-4-1106-preview'?), 'llama-2-7b' (did you mean "
            "'Llama-2-7b-hf'?) (not in the registry: see `pickwise models list`)") in err


def test_select_option_errors_name_the_option(registry_dir, tiny_loader, capsys):
    assert main(["select", PROMPT, "--registry", str(registry_dir), "--min-quality", "2"]) == 2
    assert "--min-quality" in capsys.readouterr().err
    assert main(["select", PROMPT, "--registry", str(registry_dir), "--objective", "balanced"]) == 2
    assert "--objective 'balanced' needs --willingness-to-pay" in capsys.readouterr().err  # options, not fields
    assert main(["select", PROMPT, "--registry", str(registry_dir), "--willingness-to-pay", "5"]) == 2
    assert "options: --willingness-to-pay applies only to --objective 'balanced'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # a usage error, before the predictor loads
        main(["select", PROMPT, "--registry", str(registry_dir), "--models", ""])
    assert exit_.value.code == 2 and "argument --models: names no model" in capsys.readouterr().err
    assert main(["select", PROMPT, "--registry", str(registry_dir), "--models", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_serve_refuses_a_missing_artifact_or_bad_registry(tmp_path, registry_dir, capsys):
    assert main(["serve", "--registry", str(registry_dir), "--artifact", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.yaml").write_text("- name: broken\n")
    assert main(["serve", "--registry", str(bad), "--artifact", str(tmp_path)]) == 2
    assert "invalid" in capsys.readouterr().err


def test_serve_batching_options_are_checked_and_name_the_option(registry_dir, tmp_path, capsys):
    assert main(["serve", "--registry", str(registry_dir), "--artifact", str(tmp_path),
                 "--max-batch", "0", "--max-wait-ms", "-1", "--max-queue", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-batch" in err and "--max-wait-ms" in err and "--max-queue" in err


def test_serve_names_a_bad_setting_where_it_was_set(registry_dir, tmp_path, capsys, monkeypatch):
    """A bad PICKWISE_MAX_BODY_BYTES was reported as `--max-body-bytes`, an option serve does not have, and a
    bad PICKWISE_MAX_QUEUE as `--max-queue`, which the user never typed: the variable is what to fix."""
    monkeypatch.setenv("PICKWISE_MAX_BODY_BYTES", "8MB")
    monkeypatch.setenv("PICKWISE_MAX_QUEUE", "0")
    assert main(["serve", "--registry", str(registry_dir), "--artifact", str(tmp_path), "--max-batch", "0"]) == 2
    err = capsys.readouterr().err
    assert "PICKWISE_MAX_BODY_BYTES: " in err and "PICKWISE_MAX_QUEUE: " in err and "--max-batch: " in err, err
    assert "--max-body-bytes" not in err and "--max-queue" not in err


def test_serve_workers_get_the_batching_options_through_the_environment(registry_dir, tmp_path, monkeypatch):
    """`serve --workers N` hands its options to each worker process as environment variables."""
    import torch

    from pickwise.api.cli import serving as service
    from pickwise.api.http.settings import ServiceSettings

    worker = service.WorkerSettings(registry=registry_dir, artifact=tmp_path, torch_threads=torch.get_num_threads())
    limits = ServiceSettings(max_batch=8, max_wait_ms=5.0, max_queue=40)
    for name, value in {**worker.environment(), **limits.environment()}.items():
        monkeypatch.setenv(name, value)
    app = service.app_from_env()
    settings, batcher = app.state.pickwise.settings, app.state.pickwise.batcher
    assert (settings.max_batch, settings.max_wait_ms, settings.max_queue) == (8, 5.0, 40)
    assert (batcher.max_batch, batcher.max_wait, batcher.max_queue) == (8, 0.005, 40)


def test_serve_gives_a_bf16_or_int8_encoder_every_core_and_fp32_all_but_one():
    from pickwise.api.cli.serving import default_torch_threads

    precisions = ("bf16", "int8", "onnx-int8", "fp32")
    assert [default_torch_threads(p, cpus=2) for p in precisions] == [2, 2, 2, 1]
    assert default_torch_threads("fp32", cpus=1) == 1 and default_torch_threads("bf16", cpus=16) == 16


def test_serve_keeps_the_quantised_encoders_on_the_cpu_even_beside_a_gpu(monkeypatch):
    import torch

    from pickwise.predictor.inference import default_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert [default_device(p) for p in ("int8", "onnx-int8", "bf16", "fp32")] == ["cpu", "cpu", "cuda", "cuda"]


def test_predict_writes_one_line_per_prompt_and_forwards_the_precision(registry_dir, tiny_predictor, monkeypatch,
                                                                       tmp_path, capsys):
    asked = {}

    def loader(artifact=None, **kwargs):
        asked.update(kwargs)
        return tiny_predictor

    monkeypatch.setattr(predictor_inference, "load_predictor", loader)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": PROMPT}) + "\n"
                       + json.dumps({"id": "b", "prompt": "word " * 5000}) + "\n")
    out = tmp_path / "quality.jsonl"
    twice = ",".join([*TRAINED, TRAINED[0]])  # refused, as POST /v1/predict refuses it
    assert main(["predict", "--input", str(prompts), "--models", twice, "--registry", str(registry_dir)]) == 2
    assert f"--models: '{TRAINED[0]}' is given twice; give it once" in capsys.readouterr().err
    assert asked == {}  # before the predictor loads
    models = ",".join(TRAINED)
    assert main(["predict", "--input", str(prompts), "--models", models, "--registry", str(registry_dir),
                 "--output", str(out), "--precision", "onnx-int8", "--no-progress"]) == 0
    assert asked == {"precision": "onnx-int8"}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"] and [r.get("truncated", False) for r in rows] == [False, True]
    assert all(list(r["quality"]) == list(TRAINED) and all(0 < p < 1 for p in r["quality"].values()) for r in rows)
    assert f"predicted 2 prompts x {len(TRAINED)} models" in capsys.readouterr().err

    assert main(["predict", "--input", str(prompts), "--registry", str(registry_dir), "--output", str(out),
                 "--no-progress"]) == 0
    assert asked == {"precision": "fp32"}  # the default: bit-stable across machines
    assert main(["predict", "--input", str(prompts), "--models", "nope", "--registry", str(registry_dir)]) == 2
    assert "unknown model(s) 'nope' (not in the registry: see `pickwise models list`)" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["predict", "--input", "x.jsonl", "--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
    (["predict", "--input", "x.jsonl", "--batch-size", "-3"], "argument --batch-size: must be an integer >= 1, got -3"),
    (["serve", "--port", "99999"], "argument --port: must be an integer >= 1 and <= 65535, got 99999"),
    (["plan", "--input", "x.jsonl", "--expected-output-tokens", "-5"],
     "argument --expected-output-tokens: must be an integer >= 0 and <= 1e+07, got -5"),
    (["plan", "--input", "x.jsonl", "--budget", "inf"], "argument --budget: must be a finite number >= 0, got inf"),
    (["plan", "--input", "x.jsonl", "--min-quality", "2"],
     "argument --min-quality: must be a finite number >= 0 and <= 1, got 2"),
    (["plan", "--input", "x.jsonl", "--time-limit", "-1"], "argument --time-limit: must be a finite number > 0, got -1"),
    # both passed argparse and were refused only after every prompt was encoded (and as `gap_tolerance`)
    (["plan", "--input", "x.jsonl", "--gap-tolerance", "5"],
     "argument --gap-tolerance: must be a finite number >= 0 and <= 1, got 5"),
    (["universe", "--input", "x.jsonl", "--expected-output-tokens", "20000000"],
     "argument --expected-output-tokens: must be an integer >= 0 and <= 1e+07, got 20000000"),
    (["universe", "--input", "x.jsonl", "--max-models", "two"],
     "argument --max-models: must be an integer >= 1, got 'two'"),
])
def test_numeric_options_out_of_range_are_usage_errors_naming_the_option(argv, message, capsys):
    """Before any work and without a traceback (a negative --batch-size used to give every prompt
    the same scores, exit 0; --batch-size 0 and --expected-output-tokens -5 raised tracebacks)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err

@pytest.mark.parametrize("argv, message", [
    # --capacity A=1,A=2 kept the last value; a count only unicode calls a digit ('²') raised a traceback
    (["plan", "--input", "x.jsonl", "--capacity", "m=1, m=2"], "argument --capacity: 'm' is given twice (m=1, m=2)"),
    (["plan", "--input", "x.jsonl", "--capacity", "m=-1"], "argument --capacity: 'm=-1': N must be a whole number >= 0"),
    (["plan", "--input", "x.jsonl", "--capacity", "m=1.5"], "'m=1.5': N must be a whole number >= 0, got '1.5'"),
    (["plan", "--input", "x.jsonl", "--capacity", "m=\u00b2"], "N must be a whole number >= 0, got '\u00b2'"),
    (["plan", "--input", "x.jsonl", "--capacity", "=3"], "argument --capacity: expected MODEL=N, got '=3'"),
    (["plan", "--input", "x.jsonl", "--capacity", "m"], "argument --capacity: expected MODEL=N, got 'm'"),
    (["plan", "--input", "x.jsonl", "--capacity", "m=1,"], "argument --capacity: empty name at item 2 of 'm=1,'"),
    # an empty --models used to mean every model in plan and predict, and to be a pydantic message in select
    (["plan", "--input", "x.jsonl", "--models", ""], "argument --models: names no model, got ''"),
    (["universe", "--input", "x.jsonl", "--models", " , "], "argument --models: names no model"),
    (["predict", "--input", "x.jsonl", "--models", "a,,b"], "argument --models: empty name at item 2 of 'a,,b'"),
    (["select", "p", "--exclude", "a,"], "argument --exclude: empty name at item 2 of 'a,' (a stray comma?)"),
    (["plan", "--input", "x.jsonl", "--exclude", ""], "argument --exclude: names no model"),
    (["train", "--out", "x", "--exclude-models", ",a"], "argument --exclude-models: empty name at item 1"),
])
def test_model_list_options_refuse_empty_items_and_repeats(argv, message, capsys):
    """--models, --exclude and --capacity read their commas one way in every command, before any work."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_model_list_options_drop_spaces_around_names():
    from pickwise.api.cli.main import build_parser

    args = build_parser().parse_args(["plan", "--input", "x", "--models", " a , b", "--capacity", "a = 2, b=0"])
    assert (args.models, args.capacity, args.exclude) == (["a", "b"], {"a": 2, "b": 0}, [])



def test_length_buckets_refuse_a_batch_size_below_one():
    from pickwise.predictor.backbone import length_buckets

    assert length_buckets([3, 1, 2], 2) == [[1, 2], [0]]
    for bad in (0, -1):
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            length_buckets([3, 1, 2], bad)


@pytest.mark.parametrize("command", ["predict", "plan"])
def test_an_output_path_in_a_missing_directory_fails_before_any_work(command, tmp_path, capsys, monkeypatch):
    def must_not_load(*args, **kwargs):
        raise AssertionError("loaded the predictor before checking --output")

    monkeypatch.setattr(predictor_inference, "load_predictor", must_not_load)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "a", "prompt": "hi"}\n')
    target = tmp_path / "missing" / "out.jsonl"
    assert main([command, "--input", str(prompts), "--output", str(target)]) == 2
    assert f"--output {target}: directory {target.parent} does not exist" in capsys.readouterr().err
    inside_a_file = prompts / "out.jsonl"
    assert main([command, "--input", str(prompts), "--output", str(inside_a_file)]) == 2
    assert f"{prompts} is a file, not a directory" in capsys.readouterr().err
    # a directory as the output: found only after the work, as "cannot write DIR: Is a directory"
    assert main([command, "--input", str(prompts), "--output", str(tmp_path)]) == 2
    assert f"--output {tmp_path}: is a directory; give a file name" in capsys.readouterr().err
    # the input itself: replaced by lines without the prompts, which were then lost
    for same in (prompts, tmp_path / "." / "p.jsonl"):
        assert main([command, "--input", str(prompts), "--output", str(same)]) == 2
        assert f"--output {same}: is the --input file" in capsys.readouterr().err
        assert prompts.read_text() == '{"id": "a", "prompt": "hi"}\n'


@pytest.mark.parametrize("command", ["predict", "plan"])
def test_an_output_path_that_is_the_input_or_a_directory_fails_before_any_work(command, tmp_path, capsys,
                                                                              monkeypatch):
    """`--output` naming the input file replaced the prompts with the answers (the input was lost); a
    directory failed only after every prompt was predicted."""
    def must_not_load(*args, **kwargs):
        raise AssertionError("loaded the predictor before checking --output")

    monkeypatch.setattr(predictor_inference, "load_predictor", must_not_load)
    prompts = tmp_path / "p.jsonl"
    text = '{"id": "a", "prompt": "hi"}\n'
    prompts.write_text(text)
    link = tmp_path / "link.jsonl"
    link.symlink_to(prompts)
    for target in (prompts, link):
        assert main([command, "--input", str(prompts), "--output", str(target)]) == 2
        assert f"--output {target}: is the --input file; writing there would replace the input" \
            in capsys.readouterr().err
    assert prompts.read_text() == text
    assert main([command, "--input", str(prompts), "--output", str(tmp_path)]) == 2
    assert f"--output {tmp_path}: is a directory; give a file name" in capsys.readouterr().err


def test_eval_refuses_a_json_or_plot_path_that_is_a_table_or_a_directory(tmp_path, capsys):
    table = tmp_path / "t.parquet"
    table.write_bytes(b"PAR1")
    for option, target in (("--json", table), ("--plot", table), ("--json", tmp_path)):
        assert main(["eval", "--data", str(table), option, str(target)]) == 2
        err = capsys.readouterr().err
        assert (f"{option} {target}: is the --data file" in err) if target == table else \
            f"{option} {target}: is a directory" in err
    assert table.read_bytes() == b"PAR1"


def test_predict_draws_no_progress_bar_on_a_stderr_that_is_no_terminal(tmp_path, registry_dir, tiny_loader, capsys):
    """Logged or piped stderr kept the bar's frames, glued to the summary line after them."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": PROMPT}) + "\n")
    assert main(["predict", "--input", str(prompts), "--registry", str(registry_dir)]) == 0
    assert capsys.readouterr().err.startswith("predicted 1 prompts x ")


def test_an_output_that_is_a_link_is_written_through_it(tmp_path, registry_dir, tiny_loader, capsys):
    """The output replaced the link with a plain file: the file it pointed to kept the old answers."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": PROMPT}) + "\n")
    (tmp_path / "results").mkdir()
    real = tmp_path / "results" / "q.jsonl"
    real.write_text("old\n")
    link = tmp_path / "q.jsonl"
    link.symlink_to(real)
    assert main(["predict", "--input", str(prompts), "--registry", str(registry_dir), "--output", str(link)]) == 0
    assert link.is_symlink() and json.loads(real.read_text())["id"] == "a"


def test_predict_answers_under_the_names_asked_for(tmp_path, tiny_loader, capsys):
    from tests.api_support import registry_with_alias

    registry = registry_with_alias(tmp_path / "registry", "gpt-4-1106-preview", "gpt4")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": PROMPT}) + "\n")
    assert main(["predict", "--input", str(prompts), "--registry", str(registry), "--models", "gpt4,Llama-2-7b-hf",
                 "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert set(json.loads(out)["quality"]) == {"gpt4", "Llama-2-7b-hf"}
    assert "gpt4: answered for registry model gpt-4-1106-preview" in err


def test_an_infeasible_select_leads_with_the_sentence_and_the_way_out(registry_dir, tiny_loader, capsys):
    code = main(["select", PROMPT, "--registry", str(registry_dir), "--max-cost-usd", "1e-9"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err[0].startswith("pickwise select: error: no model satisfies the constraints")
    # the way out once, in the sentence, as options of this command (not the HTTP field max_cost_usd)
    assert "; way out: --max-cost-usd " in err[0] and "max_cost_usd" not in err[0]
    assert sum("way out" in line for line in err) == 1 and err[1] == "what blocks each model:"


def test_predict_estimates_show_each_models_answer_length_cost_and_latency(registry_dir, tmp_path, tiny_loader,
                                                                           capsys):
    from pickwise.registry import count_tokens, estimate_cost_usd, load_registry

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": PROMPT}) + "\n")
    assert main(["predict", "--input", str(prompts), "--registry", str(registry_dir), "--estimates",
                 "--no-progress"]) == 0
    line = json.loads(capsys.readouterr().out)
    snapshot = load_registry(registry_dir)
    for name in TRAINED:
        spec = snapshot.get(name)  # the tiny artifact has no length model: each model's registry figure
        assert line["output_tokens"][name] == spec.expected_output_tokens
        assert line["cost_usd"][name] == pytest.approx(estimate_cost_usd(spec, count_tokens(PROMPT)))
        assert line["latency_ms"][name] > 0


def test_an_infeasible_select_offers_a_fallback_only_where_one_could_help():
    from pickwise.api.cli.serving import format_infeasible

    hard_only = format_infeasible({"detail": "no model satisfies the constraints",
                                   "blocking": {"a": ["base model, open-ended prompt"], "b": ["deny-list"]}})
    assert "--on-infeasible" in hard_only.splitlines()[-1] and "cannot override" in hard_only
    soft = format_infeasible({"detail": "no model satisfies the constraints",
                              "blocking": {"a": ["cost cap"], "b": ["deny-list"]}})
    assert soft.splitlines()[-1] == "relax one of these constraints, or pass --on-infeasible cheapest|best_quality"


def test_an_infeasible_select_lists_only_the_models_asked_for():
    from pickwise.api.cli.serving import format_infeasible

    blocking = {"asked": ["cost cap"], **{f"other{i}": ["not in allow-list", "cost cap"] for i in range(40)},
                "denied": ["deny-list"]}
    text = format_infeasible({"detail": "no model satisfies the constraints", "blocking": blocking})
    lines = text.splitlines()
    assert "what blocks each model asked for:" in lines and any(line.strip().startswith("asked") for line in lines)
    assert not any("other" in line for line in lines) and "(41 more not in the allow-list or denied" in text


def test_plan_min_quality_zero_is_no_floor_as_over_http(registry_dir, tiny_loader, tmp_path, capsys):
    """`min_quality: 0` is no floor (POST /v1/plan, `plan --server`); the local CLI built its request
    unvalidated, kept 0 as a floor, and the low-confidence rule then refused every prompt."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": PROMPT}) + "\n")
    argv = ["plan", "--input", str(prompts), "--registry", str(registry_dir), "--models", UNTRAINED, "--budget", "1",
            "--quiet"]
    assert main(argv) == 0
    unfloored = capsys.readouterr().out
    assert main([*argv, "--min-quality", "0"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == unfloored
