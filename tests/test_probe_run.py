"""`pickwise probe run` end to end: the probe set sent to a loopback upstream through the gateway's
client, answers graded and written next to the model's YAML, and a stopped run resumed."""
from __future__ import annotations

import csv

import yaml

from bench.openai_upstream import Upstream
from pickwise.api.cli.main import main
from pickwise.registry import load_registry
from pickwise.registry.probes.probe_set import load_probe_set
from tests.api_support import new_model
from tests.gateway_support import KEY_ENV, UPSTREAM_KEY

GRADABLE = [e for e in load_probe_set() if e.gradable]


def test_probe_run_grades_the_answers_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    reference = {e.prompt: e.reference for e in GRADABLE}
    wrong = {e.prompt for e in GRADABLE[::4]}

    def answer(model, messages):  # right on three prompts in four, in the styles models use
        prompt = messages[-1]["content"]
        letter = reference.get(prompt, "A")
        if prompt in wrong:
            letter = next(c for c in "ABCDEFGHIJ" if c != letter)
        return f"Let me think. The answer is ({letter})."

    registry = tmp_path / "registry"
    registry.mkdir()
    with Upstream(key=UPSTREAM_KEY, answer=answer).running() as up:
        up.behave("newbie-v1", "status", status=500)  # told to fail until the run is cut short below
        entry = new_model("newbie", probe=None, endpoint={"base_url": up.base_url, "model": "newbie-v1",
                                                          "api_key_env": KEY_ENV, "timeout_s": 5.0})
        entry.pop("probe")
        (registry / "newbie.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
        args = ["probe", "run", "--model", "newbie", "--registry", str(registry), "--gradable-only",
                "--no-progress", "--concurrency", "8"]

        monkeypatch.setattr("pickwise.api.cli.probe_run.BACKOFF_S", 0.01)
        assert main(args) == 1  # every call failed: nothing answered, exit 1
        assert "failed this run" in capsys.readouterr().err

        up.behave("newbie-v1")
        assert main(args) == 0
        answers = registry / "probes" / "newbie.responses.jsonl"
        lines = answers.read_text().splitlines()
        assert len(lines) == len(GRADABLE)

        answers.write_text("\n".join(lines[:100]) + '\n{"prompt_id": "cut sh')  # stopped midway
        before = len(up.seen)
        assert main(args) == 0
        assert len(up.seen) - before == len(GRADABLE) - 100  # only what was missing is asked again

    assert {s.model for s in up.seen} == {"newbie-v1"}
    assert up.seen[-1].body["messages"][0]["content"] in reference
    with (registry / "probes" / "newbie.csv").open() as f:
        scores = {row["prompt_id"]: float(row["score"]) for row in csv.DictReader(f)}
    assert len(scores) == len(GRADABLE)
    assert sum(scores.values()) == len(GRADABLE) - len(wrong)
    assert "probe: {results: probes/newbie.csv}" in capsys.readouterr().err

    entry["probe"] = {"results": "probes/newbie.csv"}
    (registry / "newbie.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
    assert load_registry(registry).probe_scores("newbie") == scores


def test_probe_run_needs_an_endpoint(tmp_path, capsys):
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "plain.yaml").write_text(yaml.safe_dump(new_model("plain"), sort_keys=False))
    (registry / "ref.yaml").write_text(yaml.safe_dump(new_model("gpt-4-1106-preview", probe=None), sort_keys=False))
    assert main(["probe", "run", "--model", "plain", "--registry", str(registry)]) == 2
    assert "has no endpoint" in capsys.readouterr().err


def test_probe_run_refuses_a_max_tokens_over_the_models_limit_before_any_call(tmp_path, monkeypatch, capsys):
    # its server would refuse every one of the 400 calls with a 400 (as the loopback upstream does)
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    registry = tmp_path / "registry"
    registry.mkdir()
    with Upstream(key=UPSTREAM_KEY).running() as up:
        up.behave("short-v1", max_tokens=256)
        entry = new_model("short", max_output_tokens=256, expected_output_tokens=100,
                          endpoint={"base_url": up.base_url, "model": "short-v1", "api_key_env": KEY_ENV})
        entry.pop("probe")
        (registry / "short.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
        assert main(["probe", "run", "--model", "short", "--registry", str(registry), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "--max-tokens 512 is more than model 'short' answers" in err, err
        assert "max_output_tokens is 256" in err and "--max-tokens 256 or less" in err, err
        assert main(["probe", "run", "--model", "short", "--registry", str(registry), "--no-progress",
                     "--max-tokens", "257"]) == 2
        assert up.seen == [] and not (registry / "probes").exists()


def test_probe_run_records_each_answers_length(tmp_path, monkeypatch, capsys):
    """usage.completion_tokens of every answer goes into the results (graded or not); a reply without
    usage, or an answer kept from a run before lengths were recorded, has no length."""
    import json

    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    everything = load_probe_set()
    reference = {e.prompt: e.reference for e in GRADABLE}

    def answer(model, messages):  # one short line on multiple-choice prompts, 40 words on the others
        prompt = messages[-1]["content"]
        return f"The answer is ({reference[prompt]})." if prompt in reference else " ".join(["step"] * 40)

    registry = tmp_path / "registry"
    registry.mkdir()
    with Upstream(key=UPSTREAM_KEY, answer=answer).running() as up:
        for name in ("talker", "quiet"):
            entry = new_model(name, probe=None, endpoint={"base_url": up.base_url, "model": f"{name}-v1",
                                                          "api_key_env": KEY_ENV, "timeout_s": 5.0})
            entry.pop("probe")
            (registry / f"{name}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
        up.behave("quiet-v1", usage=False)
        old = registry / "probes" / "talker.responses.jsonl"  # two answers from a run before lengths were kept
        old.parent.mkdir()
        old.write_text("".join(json.dumps({"prompt_id": e.prompt_id, "response": "The answer is (A)."}) + "\n"
                               for e in GRADABLE[:2]))
        assert main(["probe", "run", "--model", "talker", "--registry", str(registry), "--no-progress"]) == 0
        assert f"recorded for {len(everything) - 2} of {len(everything)} answers" in capsys.readouterr().err
        assert main(["probe", "run", "--model", "quiet", "--registry", str(registry), "--no-progress",
                     "--gradable-only"]) == 0
        assert "had no usage (or one over --max-tokens): their lengths are unknown" in capsys.readouterr().err

    with (registry / "probes" / "talker.csv").open() as f:
        rows = {row["prompt_id"]: row for row in csv.DictReader(f)}
    assert len(rows) == len(everything)
    for e in everything:
        row = rows[e.prompt_id]
        if e in GRADABLE[:2]:
            assert row["output_tokens"] == ""
        elif e.gradable:
            assert (row["score"], row["output_tokens"]) == ("1", "4")
        else:
            assert (row["score"], row["output_tokens"]) == ("", "40")
    assert (registry / "probes" / "quiet.csv").read_text().startswith("prompt_id,score\n")  # no lengths: no column

    for name in ("talker", "quiet"):
        entry = yaml.safe_load((registry / f"{name}.yaml").read_text())
        entry["probe"] = {"results": f"probes/{name}.csv"}
        (registry / f"{name}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
    snapshot = load_registry(registry)
    lengths = snapshot.probe_lengths("talker")
    assert len(lengths) == len(everything) - 2 and set(lengths.values()) == {4, 40}
    assert len(snapshot.probe_scores("talker")) == len(GRADABLE) and snapshot.probe_lengths("quiet") is None


def _registered(registry, up, name, upstream_name, **fields):
    entry = new_model(name, probe=None, endpoint={"base_url": up.base_url, "model": upstream_name,
                                                  "api_key_env": KEY_ENV, "timeout_s": 5.0}, **fields)
    entry.pop("probe")
    (registry / f"{name}.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
    return entry


def test_a_failed_run_never_replaces_the_results_the_registry_reads(tmp_path, monkeypatch, capsys):
    """The answers file gone (deleted, or moved away to probe again) and the endpoint failing: the
    run must not swap the 220 results the model's entry reads for an empty file, breaking the registry."""
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    monkeypatch.setattr("pickwise.api.cli.probe_run.BACKOFF_S", 0.01)
    reference = {e.prompt: e.reference for e in GRADABLE}
    registry = tmp_path / "registry"
    registry.mkdir()
    args = ["probe", "run", "--model", "kept", "--registry", str(registry), "--gradable-only", "--no-progress"]
    with Upstream(key=UPSTREAM_KEY, answer=lambda m, msgs: f"({reference.get(msgs[-1]['content'], 'A')})").running() as up:
        entry = _registered(registry, up, "kept", "kept-v1")
        assert main(args) == 0
        entry["probe"] = {"results": "probes/kept.csv"}
        (registry / "kept.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
        results = (registry / "probes" / "kept.csv").read_text()
        (registry / "probes" / "kept.responses.jsonl").unlink()
        up.behave("kept-v1", "status", status=401)  # its key revoked
        capsys.readouterr()
        assert main(args) == 1
        err = capsys.readouterr().err
        assert f"{registry / 'probes' / 'kept.csv'} was not replaced: it holds results for {len(GRADABLE)} probe " \
               "prompts this run has no answer to" in err, err
        assert (registry / "probes" / "kept.csv").read_text() == results
        assert len(load_registry(registry).probe_scores("kept")) == len(GRADABLE)

        # a score added by hand for a prompt the grader cannot grade (as `probe score` suggests) is kept too
        up.behave("kept-v1")
        open_ended = next(e for e in load_probe_set() if not e.gradable)
        (registry / "probes" / "kept.csv").write_text(results + f"{open_ended.prompt_id},0.5\n")
        assert main(args[:-2] + ["--no-progress"]) == 1  # the whole set: that prompt answered, not graded
    assert "it holds scores for 1 probe prompts this run cannot grade (graded by hand?)" in capsys.readouterr().err
    assert load_registry(registry).probe_scores("kept")[open_ended.prompt_id] == 0.5


def test_probe_run_warns_when_the_answers_do_not_measure_the_model(tmp_path, monkeypatch, capsys):
    """Another model answering, empty answers, answers the grader cannot read: each said, with what to do."""
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    answers = {"proxied-v1": lambda p: "The answer is (A).", "mute-v1": lambda p: "",
               "prose-v1": lambda p: "I think the second one is right."}
    registry = tmp_path / "registry"
    registry.mkdir()
    with Upstream(key=UPSTREAM_KEY, answer=lambda m, msgs: answers[m](msgs[-1]["content"])).running() as up:
        up.behave("proxied-v1", reply_model="gpt-3.5-turbo-0125")
        for name in ("proxied", "mute", "prose"):
            _registered(registry, up, name, f"{name}-v1")
        out = {}
        for name in ("proxied", "mute", "prose"):
            assert main(["probe", "run", "--model", name, "--registry", str(registry), "--gradable-only",
                         "--no-progress"]) == 0
            out[name] = capsys.readouterr().err
    n = len(GRADABLE)
    assert f"{n} replies name another model than 'proxied-v1': 'gpt-3.5-turbo-0125' ({n})" in out["proxied"]
    assert f"{n} of {n} answers are empty (graded wrong)" in out["mute"] and "--max-tokens" in out["mute"]
    assert "is below blind guessing" in out["prose"] and "name an option letter" in out["prose"]
    assert "another model" not in out["mute"] + out["prose"] and "empty" not in out["proxied"] + out["prose"]
    assert "guessing" not in out["mute"]  # empty answers are said once


def test_probe_run_drops_lengths_over_the_calls_max_tokens(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    registry = tmp_path / "registry"
    registry.mkdir()
    with Upstream(key=UPSTREAM_KEY, answer=lambda m, msgs: "(A) " + "blah " * 600).running() as up:
        _registered(registry, up, "wordy", "wordy-v1")
        # the server bills 601 tokens for an answer capped at 512: that length cannot be right
        assert main(["probe", "run", "--model", "wordy", "--registry", str(registry), "--gradable-only",
                     "--no-progress", "--max-tokens", "512"]) == 0
    assert f"recorded for 0 of {len(GRADABLE)} answers" in capsys.readouterr().err
    assert (registry / "probes" / "wordy.csv").read_text().startswith("prompt_id,score\n")


def test_an_interrupted_run_says_what_it_kept(tmp_path):
    """Ctrl-C midway: exit 130 with where the answers are and how to resume, not silence."""
    import os
    import signal
    import subprocess
    import sys
    import time

    registry = tmp_path / "registry"
    registry.mkdir()
    with Upstream(key=UPSTREAM_KEY).running() as up:
        up.behave("slow-v1", delay_s=0.2)
        _registered(registry, up, "slow", "slow-v1")
        answers = registry / "probes" / "slow.responses.jsonl"
        child = subprocess.Popen(
            [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from pickwise.api.cli.main import main; sys.exit(main(sys.argv[1:]))",
             "probe", "run", "--model", "slow", "--registry", str(registry), "--no-progress", "--concurrency", "4"],
            stderr=subprocess.PIPE, text=True, env={**os.environ, KEY_ENV: UPSTREAM_KEY})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not answers.is_file() or answers.stat().st_size == 0):
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        err = child.communicate(timeout=30)[1]
    assert child.returncode == 130, err
    kept = len(answers.read_text().splitlines())
    assert 0 < kept < len(load_probe_set())
    assert f"interrupted: {kept} answers kept in {answers}; run the command again to resume" in err, err


def test_failures_say_which_endpoint_setting_to_change(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    monkeypatch.setattr("pickwise.api.cli.probe_run.RETRIES", 0)
    registry = tmp_path / "registry"
    registry.mkdir()
    args = ["probe", "run", "--registry", str(registry), "--gradable-only", "--no-progress", "--concurrency", "64"]
    with Upstream(key=UPSTREAM_KEY).running() as up:
        up.behave("sluggish-v1", "hang")
        entry = _registered(registry, up, "sluggish", "sluggish-v1")
        entry["endpoint"]["timeout_s"] = 0.2
        (registry / "sluggish.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
        up.behave("locked-v1", "status", status=403)  # refused at once: before the hanging calls fill the server
        _registered(registry, up, "locked", "locked-v1")
        assert main(args + ["--model", "locked"]) == 1
        assert len(up.calls("locked-v1")) <= 64  # those in flight when the key was refused; no more are sent
        err = capsys.readouterr().err
        assert f"the endpoint refused the key: check the environment variable {KEY_ENV}" in err, err
        assert "timed out" not in err
        assert "(not written)" in err and not (registry / "probes" / "locked.csv").exists()  # no bare header
        assert main(args + ["--model", "sluggish"]) == 1
    err = capsys.readouterr().err
    assert f"{len(GRADABLE)} calls timed out after 0.2 s, each tried 1 time(s): for a slow model, raise " \
           f"`endpoint.timeout_s` of 'sluggish' in {registry / 'sluggish.yaml'}" in err, err


def test_answers_of_another_endpoint_model_are_asked_again(tmp_path, monkeypatch, capsys):
    """endpoint.model changed after a run (a new version, a fixed typo): the answers kept from the
    old model do not describe the new one, so the resumed run asks again instead of reusing them."""
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    reference = {e.prompt: e.reference for e in GRADABLE}

    def answer(model, messages):  # v1 always right, v2 always "A"
        return f"The answer is ({reference[messages[-1]['content']] if model == 'fresh-v1' else 'A'})."

    registry = tmp_path / "registry"
    registry.mkdir()
    args = ["probe", "run", "--model", "fresh", "--registry", str(registry), "--gradable-only", "--no-progress"]
    with Upstream(key=UPSTREAM_KEY, answer=answer).running() as up:
        _registered(registry, up, "fresh", "fresh-v1")
        assert main(args) == 0
        _registered(registry, up, "fresh", "fresh-v2")
        capsys.readouterr()
        assert main(args) == 0
    err = capsys.readouterr().err
    n = len(GRADABLE)
    assert f"{n} answers in {registry / 'probes' / 'fresh.responses.jsonl'} were asked of another endpoint model " \
           f"('fresh-v1' ({n})), not 'fresh-v2': asking again" in err, err
    assert up.calls("fresh-v2") == ["fresh-v2"] * n
    with (registry / "probes" / "fresh.csv").open() as f:
        scores = [float(row["score"]) for row in csv.DictReader(f)]
    assert len(scores) == n and sum(scores) == sum(e.reference == "A" for e in GRADABLE)
