"""The live Registry: atomic add/remove, reload keeping the old snapshot on error, concurrent readers."""
from __future__ import annotations

import json
import threading
import time

import pytest
import yaml

from pickwise.registry import ModelSpec, NameTakenError, Registry, RegistryConflict, RegistryError, load_registry
from pickwise.registry.probes import inline as probe_inline
from pickwise.registry.store import write_atomically
from tests.registry_samples import csv_text, jsonl_text, make_registry, model, scores, write


def file_state(directory):
    """name -> (bytes, mtime_ns) of every file, to prove untouched files stay untouched."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_add_writes_one_new_file_and_leaves_others_untouched(tmp_path):
    reg = Registry(make_registry(tmp_path))
    before, old_version = file_state(tmp_path), reg.snapshot.version
    text = "# my model\n" + yaml.safe_dump(model("org/new-model", aliases=["nm"]))
    spec = reg.add_model(text)
    after = file_state(tmp_path)
    assert set(after) - set(before) == {"org_new-model.yaml"}
    assert {k: after[k] for k in before} == before
    assert (tmp_path / "org_new-model.yaml").read_text() == text  # written as given, comment kept
    assert spec.name == "org/new-model" and reg.snapshot.get("nm") == spec
    assert reg.snapshot.version != old_version
    assert reg.reload().version == reg.snapshot.version  # same bytes on disk as validated


def test_written_files_are_readable_by_others_and_rewrites_keep_their_mode(tmp_path):
    """mkstemp creates 0600 files: every file the service wrote became unreadable to other accounts."""
    make_registry(tmp_path)
    registry = Registry(tmp_path)
    registry.add_model(model("fresh"))
    assert (tmp_path / "fresh.yaml").stat().st_mode & 0o777 == 0o644
    (tmp_path / "b.yaml").chmod(0o640)  # b.yaml holds two models: removing one rewrites it
    registry.remove_model("beta")
    assert (tmp_path / "b.yaml").stat().st_mode & 0o777 == 0o640


def test_add_accepts_spec_and_json(tmp_path):
    reg = Registry(make_registry(tmp_path))
    reg.add_model(ModelSpec.model_validate(model("from-spec")))
    reg.add_model(json.dumps(model("from-json")), fmt="json")
    assert "from-spec" in Registry(tmp_path).snapshot and "from-json" in Registry(tmp_path).snapshot


def test_add_refuses_existing_name_or_alias_and_writes_nothing(tmp_path):
    reg = Registry(make_registry(tmp_path))
    before = file_state(tmp_path)
    with pytest.raises(NameTakenError, match="'a1' is already taken by model 'alpha' in registry file a.yaml"):
        reg.add_model(model("other", aliases=["a1"]))
    with pytest.raises(RegistryError, match="'beta' is already taken"):
        reg.add_model(model("beta"))
    assert file_state(tmp_path) == before


def test_add_invalid_model_reports_field_and_writes_nothing(tmp_path):
    reg = Registry(make_registry(tmp_path))
    before = file_state(tmp_path)
    with pytest.raises(RegistryError) as info:
        reg.add_model(yaml.safe_dump(model("bad", pricing={"input_per_million": -5, "output_per_million": 1})))
    assert info.value.field == "pricing.input_per_million" and "expected a number >= 0, got -5" in str(info.value)
    with pytest.raises(RegistryError, match="add one model at a time"):
        reg.add_model(yaml.safe_dump([model("x1"), model("x2")]))
    with pytest.raises(RegistryError, match="invalid JSON"):
        reg.add_model("{nope", fmt="json")
    twice = json.dumps(model("dup")).replace('"context_window": 8192', '"context_window": 8192, "context_window": 50')
    with pytest.raises(RegistryError, match="invalid JSON: key 'context_window' appears twice"):  # kept 50 silently
        reg.add_model(twice, fmt="json")
    assert file_state(tmp_path) == before


def test_add_never_reuses_a_taken_file_name(tmp_path):
    reg = Registry(make_registry(tmp_path))
    reg.add_model(model("a"))  # a.yaml already holds 'alpha'
    assert (tmp_path / "a-2.yaml").exists() and reg.snapshot.source_file("a").name == "a-2.yaml"


def test_a_file_name_never_starts_with_a_dash(tmp_path):
    """A name in another script became '-.yaml' and then '--2.yaml': files `rm` and `ls` take for options."""
    from pickwise.registry.store import safe_file_stem

    assert [safe_file_stem(n) for n in ("мой-модель", "-x-", "mistralai/Mixtral-8x7B", "日本")] == \
        ["model", "x", "mistralai_Mixtral-8x7B", "model"]
    reg = Registry(make_registry(tmp_path))
    reg.add_model(model("мой-модель"))
    reg.add_model(model("тест-модель"))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("-")]
    assert {reg.snapshot.source_file(n).name for n in ("мой-модель", "тест-модель")} == {"model.yaml", "model-2.yaml"}


def test_remove_single_model_file_deletes_it(tmp_path):
    reg = Registry(make_registry(tmp_path))
    b_before = file_state(tmp_path)["b.yaml"]
    assert reg.remove_model("a1").name == "alpha"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.yaml"]
    assert file_state(tmp_path)["b.yaml"] == b_before
    assert "alpha" not in reg.snapshot and "alpha" not in Registry(tmp_path).snapshot


def test_remove_from_multi_model_file_rewrites_only_that_file(tmp_path):
    reg = Registry(make_registry(tmp_path))
    a_before = file_state(tmp_path)["a.yaml"]
    reg.remove_model("beta")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "b.yaml"]  # no temp files left
    assert file_state(tmp_path)["a.yaml"] == a_before
    text = (tmp_path / "b.yaml").read_text()
    assert text.startswith("# two models\n") and "beta" not in text
    assert Registry(tmp_path).snapshot.names() == ("alpha", "gamma/large")


def test_remove_keeps_other_models_comments(tmp_path):
    write(tmp_path, "m.yaml", "# header\n\n# about one\n- " + yaml.safe_dump(model("one")).replace("\n", "\n  ").rstrip()
          + "\n# about two\n- " + yaml.safe_dump(model("two")).replace("\n", "\n  ").rstrip() + "\n")
    Registry(tmp_path).remove_model("one")
    text = (tmp_path / "m.yaml").read_text()
    assert "# header" in text and "# about two" in text and "# about one" not in text


def test_remove_unknown_and_last_model(tmp_path):
    write(tmp_path, "m.yaml", model("only"))
    reg = Registry(tmp_path)
    with pytest.raises(KeyError, match="unknown model 'ghost'"):
        reg.remove_model("ghost")
    with pytest.raises(RegistryError, match="last model"):
        reg.remove_model("only")
    assert (tmp_path / "m.yaml").exists()


def test_remove_refused_when_another_model_depends_on_it(tmp_path):
    pytest.importorskip("pickwise.registry.probes.results", reason="the loader hands every probe section to pickwise.registry.probes")
    write(tmp_path, "m.yaml", [model("base"), model("child", probe={"similar_to": "base"})])
    reg = Registry(tmp_path)
    before = file_state(tmp_path)
    with pytest.raises(RegistryError, match=r"^model 'base': cannot remove it: 'child' name\(s\) it in probe.similar_to"):
        reg.remove_model("base")
    assert file_state(tmp_path) == before and "base" in reg.snapshot


def test_reload_keeps_old_snapshot_on_error(tmp_path):
    reg = Registry(make_registry(tmp_path))
    old = reg.snapshot
    write(tmp_path, "a.yaml", "- name: alpha\n  pricing: [\n")
    with pytest.raises(RegistryError, match="a.yaml"):
        reg.reload()
    assert reg.snapshot is old and reg.snapshot.get("alpha")
    write(tmp_path, "a.yaml", model("alpha2"))
    new = reg.reload()
    assert reg.snapshot is new and "alpha2" in new and new.version != old.version


def test_refresh_picks_up_edits_on_disk_and_keeps_serving_through_a_broken_one(tmp_path):
    reg = Registry(make_registry(tmp_path))
    reg.check_interval_s = 0.0
    old = reg.snapshot
    assert reg.refresh() is old  # nothing changed: not re-read
    write(tmp_path, "c.yaml", model("delta", pricing={"input_per_million": 3, "output_per_million": 4}))
    new = reg.refresh()
    assert "delta" in new and new.version != old.version and reg.reload_error is None
    write(tmp_path, "c.yaml", "- name: delta\n  pricing: [\n")  # a broken hand edit
    assert reg.refresh() is new and "c.yaml" in reg.reload_error
    assert reg.refresh() is new  # not re-parsed until the files change again
    write(tmp_path, "c.yaml", model("delta", pricing={"input_per_million": 5, "output_per_million": 6}))
    assert reg.refresh().get("delta").pricing.input_per_million == 5 and reg.reload_error is None
    reg.check_interval_s = 3600.0  # between checks a reader pays nothing, and sees the last snapshot
    (tmp_path / "c.yaml").unlink()
    assert "delta" in reg.refresh()


def test_add_sees_a_model_written_to_disk_by_hand_as_taken(tmp_path):
    reg = Registry(make_registry(tmp_path))
    reg.check_interval_s = 3600.0  # the service has not looked since: add must look itself
    write(tmp_path, "hand.yaml", model("by-hand"))
    with pytest.raises(NameTakenError, match="'by-hand' is already taken by model 'by-hand' in registry file hand.yaml"):
        reg.add_model(model("by-hand"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "b.yaml", "hand.yaml"]


def test_readers_see_whole_snapshots_during_writes(tmp_path):
    reg = Registry(make_registry(tmp_path))
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            snap = reg.snapshot
            seen.add((snap.version, len(snap.models)))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(5):
            reg.add_model(model(f"extra{i}"))
    finally:
        stop.set()
        reader.join()
    sizes_by_version = {}
    for version, size in seen:
        sizes_by_version.setdefault(version, set()).add(size)
    assert all(len(sizes) == 1 for sizes in sizes_by_version.values())
    assert len(reg.snapshot.models) == 8


def test_add_with_relative_probe_path_inlines_the_results(tmp_path):

    reg = Registry(make_registry(tmp_path / "reg"))
    src = tmp_path / "src"
    (src / "probes").mkdir(parents=True)
    (src / "probes" / "new.csv").write_text(csv_text(scores(60)))
    text = "# my model\n" + yaml.safe_dump(model("new", probe={"results": "probes/new.csv"}), sort_keys=False)
    text = text.replace("results: probes/new.csv", "results: probes/new.csv  # from my eval run")
    reg.add_model(text, source_dir=src)
    assert reg.snapshot.probe_scores("new") == scores(60)
    written = (tmp_path / "reg" / "new.yaml").read_text()
    assert written.startswith(f"# probe.results: 60 rows inlined from {src / 'probes' / 'new.csv'}")
    assert "# my model" in written and "# from my eval run" in written  # the author's comments survive
    assert yaml.safe_load(written)["probe"]["results"][0] == {"prompt_id": next(iter(scores(60))), "score": 0.0}
    (src / "probes" / "new.csv").unlink()  # the registry no longer depends on the author's file
    assert Registry(tmp_path / "reg").snapshot.probe_scores("new") == scores(60)


def test_add_inlines_a_flow_style_probe_in_a_one_item_list(tmp_path):

    reg = Registry(make_registry(tmp_path / "reg"))
    (tmp_path / "r.jsonl").write_text(jsonl_text(scores(55, offset=10)))
    entry = model("listed", probe={"results": "r.jsonl", "benchmark_score": 0.4})
    reg.add_model(yaml.safe_dump([entry], sort_keys=False, default_flow_style=None), source_dir=tmp_path)
    assert reg.snapshot.probe_scores("listed") == scores(55, offset=10)
    assert reg.snapshot.get("listed").probe.benchmark_score == 0.4


def test_add_without_source_dir_refuses_a_probe_path_and_writes_nothing(tmp_path):
    reg = Registry(make_registry(tmp_path))
    (tmp_path / "secret.csv").write_text("prompt_id,score\n")
    before = file_state(tmp_path)
    for path in ("secret.csv", "/etc/passwd"):
        text = yaml.safe_dump(model("posted", probe={"results": path}))
        line = 1 + next(i for i, t in enumerate(text.splitlines()) if "results:" in t)
        with pytest.raises(RegistryError, match="probe.results must be inline when registering over the API") as info:
            reg.add_model(text)
        assert (info.value.model, info.value.field, info.value.line) == ("posted", "probe.results", line)
    assert file_state(tmp_path) == before and "posted" not in reg.snapshot


def test_add_with_inline_results_is_written_as_given(tmp_path):

    reg = Registry(make_registry(tmp_path))
    rows = [{"prompt_id": p, "score": s} for p, s in scores(50).items()]
    text = "# inline\n" + yaml.safe_dump(model("inl", probe={"results": rows}), sort_keys=False)
    reg.add_model(text)
    assert (tmp_path / "inl.yaml").read_text() == text and reg.snapshot.probe_scores("inl") == scores(50)


def test_add_with_a_bad_results_file_names_its_line_and_writes_nothing(tmp_path):

    reg = Registry(make_registry(tmp_path / "reg"))
    before = file_state(tmp_path / "reg")
    (tmp_path / "bad.csv").write_text(csv_text({**scores(60), "extra": "high"}))
    with pytest.raises(RegistryError) as info:
        reg.add_model(yaml.safe_dump(model("bad", probe={"results": "bad.csv"})), source_dir=tmp_path)
    assert (info.value.model, info.value.field) == ("bad", "probe.results")
    assert "bad.csv:62: score 'high' is not a number" in str(info.value)
    with pytest.raises(RegistryError, match="results file not found"):
        reg.add_model(yaml.safe_dump(model("gone", probe={"results": "gone.csv"})), source_dir=tmp_path)
    assert file_state(tmp_path / "reg") == before


def test_add_dumps_cleanly_when_the_splice_does_not_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(probe_inline, "_spliced", lambda text, *rest: text)  # a splice that changed nothing
    reg = Registry(make_registry(tmp_path / "reg"))
    (tmp_path / "a.csv").write_text(csv_text(scores(50)))
    reg.add_model("# lost in a re-dump\n" + yaml.safe_dump(model("d", probe={"results": "a.csv"})), source_dir=tmp_path)
    written = (tmp_path / "reg" / "d.yaml").read_text()
    assert written.startswith("# probe.results: 50 rows inlined from ") and "# lost" not in written
    assert reg.snapshot.probe_scores("d") == scores(50) and "a.csv" not in written.split("\n", 1)[1]


def test_specs_to_yaml_writes_what_the_loader_reads_back(tmp_path):
    from pickwise.registry import default_registry_dir, load_registry
    from pickwise.registry.store import specs_to_yaml

    shipped = load_registry(default_registry_dir())
    specs = [spec for spec in shipped.enabled() if spec.probe is None or not isinstance(spec.probe.results, str)][:5]
    assert len(specs) == 5
    (tmp_path / "subset.yaml").write_text(specs_to_yaml(specs))
    again = load_registry(tmp_path)
    assert [again.get(s.name) for s in specs] == specs
    single = yaml.safe_load(specs_to_yaml(specs[0]))
    assert isinstance(single, dict) and single["name"] == specs[0].name and None not in single.values()


def test_errors_of_a_model_given_as_json_carry_no_yaml_line_numbers(tmp_path):
    """JSON is turned into YAML before validation: lines of that YAML would point nowhere the user sees."""
    reg = Registry(make_registry(tmp_path))
    with pytest.raises(RegistryError) as err:
        reg.add_model(json.dumps(model("j", context_window=-3)), fmt="json")
    assert err.value.errors[0].field == "context_window" and all(i.line is None for i in err.value.errors)
    with pytest.raises(RegistryError) as err:  # YAML as given keeps its lines
        reg.add_model(yaml.safe_dump(model("y", context_window=-3)))
    assert err.value.errors[0].line is not None


def test_json_nested_too_deeply_is_an_error_not_a_recursion_traceback(tmp_path):
    reg = Registry(make_registry(tmp_path))
    with pytest.raises(RegistryError, match="invalid JSON: nested too deeply"):
        reg.add_model("[" * 100_000 + "]" * 100_000, fmt="json")


def test_a_directory_that_cannot_be_written_or_a_file_that_cannot_be_read_is_a_clear_error(tmp_path, monkeypatch):
    """A read-only registry gave the service a 500 and the CLI a PermissionError traceback."""
    import pickwise.registry.store as store

    reg = Registry(make_registry(tmp_path))
    before = file_state(tmp_path)

    def refuse(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store, "write_atomically", refuse)  # what a read-only directory does to the write
    with pytest.raises(RegistryConflict, match="cannot change fresh.yaml in the registry directory: Permission denied"):
        reg.add_model(model("fresh"))
    with pytest.raises(RegistryConflict, match="cannot change b.yaml"):
        reg.remove_model("beta")
    assert file_state(tmp_path) == before and "beta" in reg.snapshot
    monkeypatch.undo()
    from pickwise.registry import disk

    real_read = disk.read_file

    def unreadable_a(path):  # what mode 000 does (a chmod would not stop root, who runs CI here)
        if path.name == "a.yaml":
            raise PermissionError(13, "Permission denied")
        return real_read(path)

    monkeypatch.setattr(disk, "read_file", unreadable_a)
    with pytest.raises(RegistryError, match="a.yaml: cannot read the file: Permission denied"):
        load_registry(tmp_path)


def test_replace_swaps_a_model_in_its_own_file_atomically_and_keeps_its_neighbours(tmp_path):
    registry = Registry(make_registry(tmp_path))
    before_b = (tmp_path / "b.yaml").read_text()
    with pytest.raises(NameTakenError, match="--replace"):
        registry.add_model(model("beta", provider="other"))
    spec = registry.add_model("# beta, repriced\n" + yaml.safe_dump(model("beta", provider="other")), replace=True)
    assert spec.provider == "other" and registry.snapshot.get("beta").provider == "other"
    text = (tmp_path / "b.yaml").read_text()
    assert "# two models" in text and "# beta, repriced" in text and text != before_b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "b.yaml"]  # no new file, no leftovers
    assert load_registry(tmp_path).get("gamma/large").name == "gamma/large"
    alone = registry.add_model(model("alpha", aliases=["a1"], provider="solo"), replace=True)  # alone in a.yaml
    assert alone.provider == "solo" and load_registry(tmp_path).get("a1").provider == "solo"
    # an alias of *another* model is never replaced
    with pytest.raises(NameTakenError, match="already taken by model 'gamma/large'"):
        registry.add_model(model("beta", aliases=["gamma/large"]), replace=True)
    # the model a PUT names must be the one the entry defines
    with pytest.raises(RegistryError, match="defines model 'beta', not 'alpha'"):
        registry.add_model(model("beta"), replace=True, name="a1")
    # replacing a name nobody has adds it
    assert registry.add_model(model("delta"), replace=True, name="delta").name == "delta"


def _racing_parse(monkeypatch, change):
    """The loader's per-file parse, with `change()` run (once) right after the first file is parsed:
    a save that lands while a reload reads the registry."""
    from pickwise.registry import loader

    real, pending = loader.parse_registry_text, [change]

    def parse(*args, **kwargs):
        entries = real(*args, **kwargs)
        if pending:
            pending.pop()()
        return entries

    monkeypatch.setattr(loader, "parse_registry_text", parse)


def priced(name, price):
    return model(name, pricing={"input_per_million": price, "output_per_million": 1.0})


@pytest.mark.parametrize("save", ["atomic", "in_place"])
def test_a_save_that_lands_during_a_reload_is_loaded_not_lost(tmp_path, monkeypatch, save):
    """A reload recorded the files' state after reading them, so a save made during the parse counted
    as seen: v2 was served for good while the file said v3."""
    reg = Registry(make_registry(tmp_path))
    reg.check_interval_s = 0.0
    write(tmp_path, "a.yaml", [priced("alpha", 2.0)])

    def save_v3():
        text = yaml.safe_dump([priced("alpha", 15.0)], sort_keys=False)
        if save == "atomic":
            write_atomically(tmp_path / "a.yaml", text.encode())
        else:
            write(tmp_path, "a.yaml", text)

    _racing_parse(monkeypatch, save_v3)
    reg.refresh()
    assert reg.refresh().get("alpha").pricing.input_per_million == 15.0 and reg.reload_error is None


def test_a_same_size_save_in_the_same_timestamp_tick_is_still_noticed(tmp_path, monkeypatch):
    """On a file system with coarse timestamps a rewrite of equal size can leave the stat as it was; a file
    changed that close to its read is hashed again."""
    from pickwise.registry import disk

    reg = Registry(make_registry(tmp_path))
    reg.check_interval_s = 0.0
    tick = time.time_ns()  # a file-system clock that does not tick during the test
    monkeypatch.setattr(disk, "_key", lambda st: (st.st_dev, st.st_ino, st.st_size, tick, tick))
    write(tmp_path, "a.yaml", [priced("alpha", 2.0)])
    assert reg.refresh().get("alpha").pricing.input_per_million == 2.0
    write(tmp_path, "a.yaml", [priced("alpha", 3.0)])
    assert reg.refresh().get("alpha").pricing.input_per_million == 3.0


def test_a_broken_file_written_during_an_add_is_reported_at_the_next_look(tmp_path, monkeypatch):
    reg = Registry(make_registry(tmp_path))
    reg.check_interval_s = 0.0
    _racing_parse(monkeypatch, lambda: write(tmp_path, "zz.yaml", "- name: broken\n  pricing: [\n"))
    reg.add_model(model("new"))
    assert "new" in reg.refresh() and "zz.yaml" in reg.reload_error


def test_a_touched_file_is_not_parsed_again(tmp_path, monkeypatch):
    from pickwise.registry import loader

    reg = Registry(make_registry(tmp_path))
    reg.check_interval_s = 0.0
    old = reg.snapshot
    monkeypatch.setattr(loader, "parse_registry_text", lambda *a: pytest.fail("parsed again"))
    for _ in range(3):
        (tmp_path / "a.yaml").touch()
        assert reg.refresh() is old


def test_a_reload_parses_only_the_files_that_changed(tmp_path, monkeypatch):
    from pickwise.registry import loader

    reg = Registry(make_registry(tmp_path))
    reg.check_interval_s = 0.0
    real, parsed = loader.parse_registry_text, []
    monkeypatch.setattr(loader, "parse_registry_text", lambda text, path, issues: parsed.append(path.name)
                        or real(text, path, issues))
    write(tmp_path, "a.yaml", [priced("alpha", 7.0)])
    assert reg.refresh().get("alpha").pricing.input_per_million == 7.0 and parsed == ["a.yaml"]


def test_latest_never_waits_and_a_background_look_serves_the_change(tmp_path):
    reg = Registry(make_registry(tmp_path))
    reg.check_interval_s = 0.0
    old = reg.snapshot
    write(tmp_path, "c.yaml", model("delta"))
    with reg._lock:  # a write in progress
        assert reg.latest() is old
    deadline = time.monotonic() + 5
    while "delta" not in reg.latest() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "delta" in reg.latest()


def test_add_inlines_answer_lengths_and_length_only_rows(tmp_path):
    reg = Registry(make_registry(tmp_path / "reg"))
    graded = scores(60)
    rows = "".join(f"{p},{s},{40 + i}\n" for i, (p, s) in enumerate(graded.items()))
    extra = [p for p in scores(70) if p not in graded]
    (tmp_path / "new.csv").write_text("prompt_id,score,output_tokens\n" + rows + "".join(f"{p},,900\n" for p in extra))
    reg.add_model(yaml.safe_dump(model("new", probe={"results": "new.csv"})), source_dir=tmp_path)
    (tmp_path / "new.csv").unlink()
    snap = Registry(tmp_path / "reg").snapshot
    assert snap.probe_scores("new") == graded
    assert snap.probe_lengths("new") == {**{p: 40 + i for i, p in enumerate(graded)}, **{p: 900 for p in extra}}
    inline = yaml.safe_load((tmp_path / "reg" / "new.yaml").read_text())["probe"]["results"]
    assert inline[-1] == {"prompt_id": extra[-1], "output_tokens": 900}
