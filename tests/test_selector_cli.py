"""`pickwise plan` / `pickwise universe` end to end on the shipped registry with given qualities."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pickwise.api.cli.main import main
from pickwise.registry import default_registry_dir, load_registry


@pytest.fixture(scope="module")
def names():
    specs = [s for s in load_registry(default_registry_dir()).enabled() if s.context_window >= 8000]
    specs.sort(key=lambda s: s.pricing.input_per_million + s.pricing.output_per_million)
    return specs[0].name, specs[-1].name  # cheapest, dearest


def write(tmp_path, rows):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def workload(names):
    cheap, dear = names
    return [
        {"id": "easy", "prompt": "What is 2 + 2?", "quality": {cheap: 0.9, dear: 0.95}},
        {"id": "hard", "prompt": "Prove that there are infinitely many primes.", "quality": {cheap: 0.2, dear: 0.9}},
        {"id": "only-cheap", "prompt": "Say hi.", "quality": {cheap: 0.7}},
    ]


def test_plan_writes_one_line_per_prompt(tmp_path, names, capsys):
    cheap, dear = names
    out = tmp_path / "plan.jsonl"
    rc = main(["plan", "--input", write(tmp_path, workload(names)), "--budget", "1.0", "--output", str(out),
               "--models", f"{cheap},{dear}"])
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["easy", "hard", "only-cheap"]
    assert {r["id"]: r["model"] for r in lines} == {"easy": dear, "hard": dear, "only-cheap": cheap}
    assert all(set(r) == {"id", "model", "quality", "cost_usd"} for r in lines)
    err = capsys.readouterr().err
    assert "total cost" in err and "certified gap" in err


def test_plan_tight_budget_moves_the_easy_prompt_and_reports_min_budget(tmp_path, names, capsys):
    cheap, dear = names
    path = write(tmp_path, workload(names))
    assert main(["plan", "--input", path, "--budget", "1e-9", "--models", f"{cheap},{dear}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "minimum feasible budget" in err
    min_budget = float(err.split("minimum feasible budget:")[1].split()[0])
    assert main(["plan", "--input", path, "--budget", str(min_budget * 1.0001), "--models", f"{cheap},{dear}",
                 "--quiet"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["model"] for r in rows} == {cheap}


@pytest.mark.parametrize("bad, message", [
    ("{not json", "prompts.jsonl:2: not valid JSON"),
    ('{"id": "x", "prompt": "p", "quality": {"no-such-model": 0.5}}', "prompts.jsonl:2: unknown model 'no-such-model'"),
    ('{"id": "x", "prompt": "p", "quality": {"CHEAP": NaN}}', "prompts.jsonl:2: quality of 'CHEAP' is nan"),
    ('{"id": "x", "prompt": "p", "quality": {"CHEAP": 1.5}}', "prompts.jsonl:2: quality of 'CHEAP' is 1.5"),
    ('{"id": "easy", "prompt": "p", "quality": {"CHEAP": 0.5}}', "prompts.jsonl:2: duplicate id 'easy'"),
    ('{"prompt": "p"}', "prompts.jsonl:2: missing or invalid 'id'"),
    # json.loads kept the last value (0.1) without a word; POST /v1/plan refuses such a body
    ('{"id": "x", "prompt": "p", "quality": {"CHEAP": 0.9, "CHEAP": 0.1}}',
     "prompts.jsonl:2: key 'CHEAP' appears twice in one JSON object; give each key once"),
    # the API's rules hold here too (POST /v1/plan refuses these lines), each named by its line
    ('{"id": "x", "prompt": " ", "quality": {"CHEAP": 0.5}}', "prompts.jsonl:2: 'prompt': the prompt is empty"),
    ('{"id": "x", "quality": {"CHEAP": 0.5}, "prompt_tokens": 1' + "0" * 30 + '}',
     "prompts.jsonl:2: 'prompt_tokens': Input should be less than or equal to"),
    ('{"id": "' + "x" * 300 + '", "prompt": "p", "quality": {"CHEAP": 0.5}}', "prompts.jsonl:2: 'id': String should have at most 256"),
    # said "Value should have at most 200000 items after validation" (POST /v1/plan too)
    ('{"id": "x", "prompt": "' + "p" * 200_001 + '"}', "prompts.jsonl:2: 'prompt': String should have at most 200000 characters"),
    # a per-prompt floor or cap on a line was dropped without a word, and the plan ignored it
    ('{"id": "x", "prompt": "p", "min_quality": 0.99}', "prompts.jsonl:2: 'min_quality' is not read from a line"),
    ('{"id": "x", "prompt": "p", "max_cost_usd": 0.001}', "prompts.jsonl:2: 'max_cost_usd' is not read from a line"),
])
def test_plan_bad_lines_name_file_and_line(tmp_path, names, capsys, bad, message):
    cheap, _ = names
    rows = [workload(names)[0], bad.replace("CHEAP", cheap)]
    assert main(["plan", "--input", write(tmp_path, rows), "--budget", "1"]) == 2
    err = capsys.readouterr().err
    assert message.replace("CHEAP", cheap) in err
    assert err.startswith("pickwise plan: error:"), err  # no progress bar frame on a stderr that is no terminal


def test_plan_unknown_model_in_models_option(tmp_path, names, capsys):
    assert main(["plan", "--input", write(tmp_path, workload(names)), "--budget", "1", "--models", "nope"]) == 2
    assert "--models: unknown model(s) 'nope' (not in the registry: see `pickwise models list`)" in capsys.readouterr().err


def test_plan_models_option_naming_one_model_twice_is_an_error(tmp_path, names, capsys):
    spec = next(s for s in load_registry(default_registry_dir()).enabled() if s.aliases)
    for models, says in ((f"{spec.name},{spec.name}", f"'{spec.name}' is given twice"),
                         (f"{spec.name},{spec.aliases[0]}", f"'{spec.aliases[0]}' names the same model as '{spec.name}'")):
        assert main(["plan", "--input", write(tmp_path, workload(names)), "--budget", "1", "--models", models]) == 2
        assert f"--models: {says}" in capsys.readouterr().err


def test_plan_counts_only_models_a_prompt_may_go_to(tmp_path, names, capsys):
    """Every line gives its own qualities for 2 models: the summary said 'candidate models: 48'."""
    assert main(["plan", "--input", write(tmp_path, workload(names)), "--budget", "1"]) == 0
    assert "candidate models: 2\n" in capsys.readouterr().err


def test_universe_picks_the_pool(tmp_path, names, capsys):
    cheap, dear = names
    rc = main(["universe", "--input", write(tmp_path, workload(names)), "--max-models", "1",
               "--models", f"{cheap},{dear}"])
    assert rc == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["models"] == [dear]  # (0.95 + 0.9 + 0) / 3 beats (0.9 + 0.2 + 0.7) / 3
    assert plan["status"] == "optimal"
    assert main(["universe", "--input", write(tmp_path, workload(names)), "--max-models", "1", "--exclude", dear]) == 0
    assert json.loads(capsys.readouterr().out)["models"] == [cheap]


def test_plan_reports_every_bad_line_at_once(tmp_path, names, capsys):
    cheap, _ = names
    rows = [workload(names)[0], "{not json", '{"id": "x", "quality": {"' + cheap + '": 0.5}}', '{"id": "y", "prompt": 3}']
    assert main(["plan", "--input", write(tmp_path, rows), "--budget", "1"]) == 2
    err = capsys.readouterr().err
    assert "prompts.jsonl:2: not valid JSON" in err
    assert "prompts.jsonl:3: needs 'prompt' (or both 'quality' and 'prompt_tokens')" in err
    assert "prompts.jsonl:4: 'prompt' must be a string" in err


def test_solver_chatter_on_fd1_does_not_reach_stdout(tmp_path, names, capfd, monkeypatch):
    """Some HiGHS builds printf to fd 1 during MIP solves; the selector routes that to stderr."""
    import os

    from pickwise.selector import universe

    real_milp = universe.milp

    def chatty_milp(*args, **kwargs):
        os.write(1, b"HighsMipSolverData::chatter\n")
        return real_milp(*args, **kwargs)

    monkeypatch.setattr(universe, "milp", chatty_milp)
    cheap, dear = names
    assert main(["universe", "--input", write(tmp_path, workload(names)), "--max-models", "1", "--solver", "ilp",
                 "--models", f"{cheap},{dear}", "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)["models"] == [dear]
    assert "HighsMipSolverData::chatter" in err


def test_a_model_named_twice_by_name_and_alias_is_an_error_not_a_silent_pick(tmp_path, names, capsys):
    """{name: 0.9, alias: 0.2} used to keep whichever came last; the API's plan did the same."""
    snapshot = load_registry(default_registry_dir())
    spec = next(s for s in snapshot.enabled() if s.aliases)
    alias = spec.aliases[0]
    rows = [workload(names)[0], {"id": "x", "prompt": "p", "quality": {spec.name: 0.9, alias: 0.2}}]
    assert main(["plan", "--input", write(tmp_path, rows), "--budget", "1"]) == 2
    assert (f"prompts.jsonl:2: '{alias}' names the same model as '{spec.name}' ({spec.name}); give it once "
            "in 'quality'") in capsys.readouterr().err


def test_plan_capacity_and_exclude_name_their_option(tmp_path, names, capsys):
    """A capacity naming an unknown model said `capacity.gpt-4: ...`; one named by its name and an
    alias is refused like a repeat; `--exclude` (the API's `exclude`) keeps a model out of the plan."""
    cheap, dear = names
    path = write(tmp_path, workload(names))
    assert main(["plan", "--input", path, "--budget", "1", "--capacity", "nope=1", "--quiet"]) == 2
    assert "pickwise plan: error: --capacity: unknown model 'nope'" in capsys.readouterr().err
    spec = next(s for s in load_registry(default_registry_dir()).enabled() if s.aliases)
    assert main(["plan", "--input", path, "--budget", "1", "--quiet",
                 "--capacity", f"{spec.name}=1,{spec.aliases[0]}=2"]) == 2
    assert f"--capacity: '{spec.aliases[0]}' names the same model as '{spec.name}'" in capsys.readouterr().err
    assert main(["plan", "--input", path, "--budget", "1", "--exclude", "nope", "--quiet"]) == 2
    assert "--exclude: unknown model(s) 'nope'" in capsys.readouterr().err
    assert main(["plan", "--input", path, "--budget", "1", "--exclude", dear, "--quiet"]) == 0
    assert {json.loads(line)["model"] for line in capsys.readouterr().out.splitlines()} == {cheap}


def test_plan_capacity_above_the_prompt_count_is_no_limit(tmp_path, names, capsys):
    """A capacity past int64 raised OverflowError (a traceback here, a 500 over HTTP)."""
    cheap, dear = names
    path = write(tmp_path, workload(names))
    assert main(["plan", "--input", path, "--budget", "1", "--quiet", "--capacity", f"{dear}={10**30}"]) == 0
    assert [json.loads(line)["model"] for line in capsys.readouterr().out.splitlines()] == [dear, dear, cheap]


def test_plan_allow_list_naming_a_disabled_model_plans_as_the_api_does(tmp_path, names, capsys):
    """The CLI refused `--models` naming a disabled model before reading the input, while POST /v1/plan
    (and `plan --server`) leaves it out and plans on the rest: both now take the service's rule."""
    from pickwise.registry.store import specs_to_yaml

    cheap, dear = names
    shipped = load_registry(default_registry_dir())
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "m.yaml").write_text(specs_to_yaml([shipped.get(cheap), shipped.get(dear).model_copy(
        update={"enabled": False})]))
    path = write(tmp_path, workload(names)[:2])
    assert main(["plan", "--input", path, "--budget", "1", "--models", f"{cheap},{dear}", "--registry",
                 str(registry), "--quiet"]) == 0
    assert {json.loads(line)["model"] for line in capsys.readouterr().out.splitlines()} == {cheap}
    assert main(["plan", "--input", path, "--budget", "1", "--models", dear, "--registry", str(registry)]) == 2
    assert f"--models: no enabled, scorable model is left after the allow- and deny-lists ({dear} is disabled)" \
        in capsys.readouterr().err


@pytest.mark.parametrize("rounds", ["down at 6 decimals", "below a millionth of a dollar"])
def test_the_minimum_budget_printed_is_a_budget_that_plans(tmp_path, names, capsys, rounds):
    """`minimum feasible budget: 0.000264 USD` for a true minimum of 0.00026415: that budget was then
    refused; and a minimum under $0.000001 printed as 0.000000. The figure printed must plan."""
    from pickwise.registry import estimate_cost_usd

    cheap, _ = names
    spec = load_registry(default_registry_dir()).get(cheap)
    tokens = range(1, 20_000) if rounds == "down at 6 decimals" else range(1, 3)

    def printed_too_low(t):
        cost = estimate_cost_usd(spec, t, 0)
        return cost > 1e-5 and float(f"{cost:.6f}") < cost if rounds == "down at 6 decimals" else cost < 5e-7

    t = next(t for t in tokens if printed_too_low(t))
    path = write(tmp_path, [{"id": "a", "quality": {cheap: 0.5}, "prompt_tokens": t}])
    argv = ["plan", "--input", path, "--expected-output-tokens", "0", "--quiet", "--budget"]
    assert main([*argv, "0"]) == 2
    err = capsys.readouterr().err
    printed = err.split("minimum feasible budget:")[1].split()[0]
    assert float(printed) > 0, err
    assert main([*argv, printed]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["cost_usd"] <= float(printed)


@pytest.mark.parametrize("command", [["plan", "--budget", "1"], ["universe", "--max-models", "1"]])
def test_a_prompt_too_long_for_every_model_is_told_so(tmp_path, names, capsys, command):
    """A prompt longer than its models' context windows (or an --expected-output-tokens past every
    max_output_tokens) was refused as having 'no allowed model after floors, latency caps and
    allow-lists', none of which the user had given; the refusal now names the length."""
    cheap, _ = names
    window = load_registry(default_registry_dir()).get(cheap).context_window
    rows = [workload(names)[0], {"id": "long", "quality": {cheap: 0.9}, "prompt_tokens": window}]
    assert main([command[0], "--input", write(tmp_path, rows), *command[1:], "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "long" in err and "context window" in err, err
    path = write(tmp_path, workload(names))
    assert main([command[0], "--input", path, *command[1:], "--quiet", "--expected-output-tokens", "1000000"]) == 2
    err = capsys.readouterr().err
    assert "max_output_tokens" in err and "--expected-output-tokens" in err, err


def test_universe_answers_under_the_names_asked_for(tmp_path, names, capsys):
    """`plan` answers under the name a model was asked for by (an alias too); `universe` answered
    under the registry name, which the user may never have seen."""
    cheap, _ = names
    spec = next(s for s in load_registry(default_registry_dir()).enabled() if s.aliases and s.context_window >= 8000)
    alias = spec.aliases[0]
    rows = [{"id": "a", "prompt": "Say hi.", "quality": {alias: 0.9, cheap: 0.5}}]
    assert main(["universe", "--input", write(tmp_path, rows), "--max-models", "1", "--quiet"]) == 0
    pool = json.loads(capsys.readouterr().out)
    assert pool["models"] == [alias] and pool["share"] == {alias: 1.0}
    assert main(["plan", "--input", write(tmp_path, rows), "--budget", "1", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == alias


def test_the_best_mean_quality_named_is_a_target_that_plans(tmp_path, names, capsys):
    """`mean quality 0.9 is out of reach: the best ... averages 0.763943` for a best of 0.7639427:
    asking for 0.763943 was refused again. The figure named must be reachable."""
    cheap, _ = names
    path = write(tmp_path, [{"id": "a", "quality": {cheap: 0.7639427}, "prompt_tokens": 10}])
    assert main(["plan", "--input", path, "--min-avg-quality", "0.9", "--quiet"]) == 2
    err = capsys.readouterr().err
    named = err.split("averages ")[1].split()[0]
    assert main(["plan", "--input", path, "--min-avg-quality", named, "--quiet"]) == 0, capsys.readouterr().err


def test_the_summary_shows_a_small_total_cost_and_budget(tmp_path, names, capsys):
    """`total cost: 0.000000 USD of budget 0.000000` for a plan of a few cheap short calls."""
    cheap, _ = names
    path = write(tmp_path, [{"id": "a", "quality": {cheap: 0.5}, "prompt_tokens": 1}])
    assert main(["plan", "--input", path, "--expected-output-tokens", "0", "--budget", "5e-7"]) == 0
    out, err = capsys.readouterr()
    line = next(row for row in err.splitlines() if row.startswith("total cost:"))
    shown_cost, shown_budget = float(line.split()[2]), float(line.split()[-1])
    assert shown_cost == pytest.approx(json.loads(out)["cost_usd"], rel=1e-5) and shown_budget == 5e-7, line


def test_ctrl_c_stops_a_universe_solve_at_once(tmp_path):
    # HiGHS runs in C and sees no Ctrl-C: the command used to wait out its time limit (78 s for 60 here)
    rng = np.random.default_rng(1)
    models = [s.name for s in load_registry(default_registry_dir()).enabled()][:25]
    rows = []
    for i in range(3000):  # random qualities: an ILP HiGHS cannot close within its time limit
        base = rng.uniform(0.2, 0.8)
        rows.append({"id": str(i), "prompt_tokens": 200,
                     "quality": {m: float(np.clip(base + rng.normal(0, 0.2), 0, 1)) for m in models}})
    command = [sys.executable, "-m", "pickwise.api.cli.main", "universe", "--input", write(tmp_path, rows),
               "--max-models", "4", "--max-mean-cost", "0.0003", "--solver", "ilp", "--time-limit", "120"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)  # reading 3,000 lines takes ~2 s, the solve 20 s and more: inside it by now
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 130
