"""Loading a registry directory and every validation error it reports."""
from __future__ import annotations

import pytest
import yaml

from pickwise.registry import RegistryError, RegistrySnapshot, UnknownModelError, load_registry
from tests.registry_samples import make_registry, model, write


def load_error(directory) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        load_registry(directory)
    return info.value


def test_loads_single_and_list_files_sorted_with_aliases(tmp_path):
    snap = load_registry(make_registry(tmp_path))
    assert isinstance(snap, RegistrySnapshot)
    assert [m.name for m in snap.models] == ["alpha", "beta", "gamma/large"]
    assert snap.get("a1").name == "alpha" and "a1" in snap and "zzz" not in snap
    assert snap.source_file("gamma/large") == tmp_path / "b.yaml"
    assert snap.get("alpha").pricing.per_request == 0.0 and snap.get("alpha").latency.estimated is False
    assert snap.probe_scores("alpha") is None
    assert len(snap.enabled()) == 3 and len(snap.version) == 16


def test_disabled_models_are_kept_but_not_enabled(tmp_path):
    write(tmp_path, "m.yaml", [model("on"), model("off", enabled=False)])
    snap = load_registry(tmp_path)
    assert snap.names() == ("off", "on") and [m.name for m in snap.enabled()] == ["on"]


def test_unknown_model_error_names_it(tmp_path):
    snap = load_registry(make_registry(tmp_path))
    with pytest.raises(UnknownModelError, match="unknown model 'nope'") as info:
        snap.get("nope")
    assert isinstance(info.value, KeyError) and info.value.model == "nope"


def test_unknown_model_error_suggests_what_a_short_or_mistyped_name_meant(tmp_path):
    write(tmp_path, "m.yaml", [model("HuggingFaceH4/zephyr-7b-beta"), model("gpt-4-1106-preview"),
                               model("claude-v2", aliases=["claude-2-0"])])
    snap = load_registry(tmp_path)
    assert snap.suggest("zephyr-7b-beta") == ["HuggingFaceH4/zephyr-7b-beta"]  # the org left off
    assert snap.suggest("GPT-4") == ["gpt-4-1106-preview"]  # the version left off, case ignored
    assert snap.suggest("claude-2") == ["claude-v2"]  # a close spelling, found by its alias too
    assert snap.suggest("nothing-like-it") == [] and snap.suggest("g") == []
    with pytest.raises(UnknownModelError, match=r"unknown model 'zephyr-7b-beta' \(did you mean 'HuggingFaceH4/zephyr"):
        snap.get("zephyr-7b-beta")
    with pytest.raises(UnknownModelError, match=r"unknown model 'nope' \(the registry's 3 models: Hugging"):
        snap.get("nope")


def test_snapshot_is_immutable(tmp_path):
    snap = load_registry(make_registry(tmp_path))
    with pytest.raises((AttributeError, TypeError, ValueError)):  # frozen dataclass / pydantic model
        snap.version = "x"
    with pytest.raises((AttributeError, TypeError, ValueError)):
        snap.models[0].name = "x"


def test_ignores_dotfiles_and_other_suffixes(tmp_path):
    make_registry(tmp_path)
    write(tmp_path, ".a.yaml.123.tmp", "garbage: [")
    write(tmp_path, ".hidden.yaml", "garbage: [")
    write(tmp_path, "README.txt", "not yaml: [")
    write(tmp_path, "c.yml", model("delta"))
    assert "delta" in load_registry(tmp_path)


def test_unknown_key(tmp_path):
    write(tmp_path, "m.yaml", model("m1", pricing={"input_per_million": 1, "output_per_million": 2, "input_per_milion": 3}))
    err = load_error(tmp_path)
    assert (err.model, err.field) == ("m1", "pricing.input_per_milion")
    assert "m.yaml:" in str(err) and "unknown key (allowed: input_per_million, output_per_million, per_request)" in str(err)


def test_unknown_top_level_key(tmp_path):
    write(tmp_path, "m.yaml", model("m1", colour="blue"))
    assert "model 'm1': field 'colour': unknown key (allowed: name, provider" in str(load_error(tmp_path))


def test_negative_price_message_names_file_model_field(tmp_path):
    write(tmp_path, "openai.yaml", model("gpt-4o", pricing={"input_per_million": -1, "output_per_million": 2}))
    err = load_error(tmp_path)
    assert err.file.name == "openai.yaml" and err.model == "gpt-4o" and err.field == "pricing.input_per_million"
    assert str(err).endswith("model 'gpt-4o': field 'pricing.input_per_million': expected a number >= 0, got -1")
    assert "openai.yaml:4:" in str(err)  # line of the bad value


def test_missing_price(tmp_path):
    write(tmp_path, "m.yaml", model("m1", pricing={"input_per_million": 1}))
    err = load_error(tmp_path)
    assert "model 'm1': field 'pricing.output_per_million': required field is missing" in str(err)


def test_missing_pricing_section(tmp_path):
    write(tmp_path, "m.yaml", model("m1", pricing=None))
    assert "field 'pricing': required field is missing" in str(load_error(tmp_path))


def test_bad_type(tmp_path):
    write(tmp_path, "m.yaml", model("m1", context_window="big"))
    err = load_error(tmp_path)
    assert err.field == "context_window" and "expected a whole number, got 'big'" in str(err)


def test_numbers_and_flags_of_the_wrong_type_are_not_coerced(tmp_path):
    """`true` is not a price of 1.0, "300" not a latency, "yes" not `enabled` (pydantic's lax mode took them)."""
    write(tmp_path, "m.yaml", model("m1", pricing={"input_per_million": "0.5", "output_per_million": True},
                                    latency={"ttft_ms": "300", "output_tokens_per_s": 50},
                                    context_window=32000.0, enabled="yes"))
    err = load_error(tmp_path)
    got = {e.field: e.message for e in err.errors}
    assert got == {"pricing.input_per_million": "expected a number, got '0.5'",
                   "pricing.output_per_million": "expected a number, got True",
                   "latency.ttft_ms": "expected a number, got '300'",
                   "context_window": "expected a whole number, got 32000.0",
                   "enabled": "expected true or false, got 'yes'"}
    write(tmp_path, "m.yaml", model("m1", pricing={"input_per_million": 1, "output_per_million": 2}))
    assert load_registry(tmp_path).get("m1").pricing.input_per_million == 1.0  # an integer price is a number


def test_an_exponent_yaml_reads_as_text_says_how_to_write_it(tmp_path):
    """YAML 1.1 (PyYAML) reads `1e3` as the string '1e3': "expected a number" alone looks absurd."""
    text = yaml.safe_dump(model("m1"), sort_keys=False).replace("output_tokens_per_s: 100", "output_tokens_per_s: 1e3")
    write(tmp_path, "m.yaml", text)
    hint = "(YAML reads an exponent without a decimal point and a sign as text: write "
    for written, fixed in (("1e3", "1.0e+3"), ("1.5e3", "1.5e+3"), ("2E-3", "2.0e-3")):
        write(tmp_path, "m.yaml", text.replace("1e3", written))
        assert {e.field: e.message for e in load_error(tmp_path).errors} == {
            "latency.output_tokens_per_s": f"expected a number, got '{written}' {hint}{fixed})"}
        write(tmp_path, "m.yaml", text.replace("1e3", fixed))
        assert load_registry(tmp_path).get("m1").latency.output_tokens_per_s == float(written)


def test_all_errors_of_a_load_are_collected(tmp_path):
    write(tmp_path, "a.yaml", model("m1", context_window="big", enabled="maybe"))
    write(tmp_path, "b.yaml", model("m2", latency={"ttft_ms": 1, "output_tokens_per_s": 0}))
    err = load_error(tmp_path)
    fields = sorted((e.file.name, e.field) for e in err.errors)
    assert fields == [("a.yaml", "context_window"), ("a.yaml", "enabled"), ("b.yaml", "latency.output_tokens_per_s")]
    assert "expected a number >= 0.001, got 0" in str(err) and len(str(err).splitlines()) == 3


def test_empty_file(tmp_path):
    write(tmp_path, "empty.yaml", "# nothing here\n")
    err = load_error(tmp_path)
    assert err.file.name == "empty.yaml" and "file is empty" in str(err)


def test_invalid_yaml_syntax_gives_line(tmp_path):
    write(tmp_path, "bad.yaml", "- name: x\n  pricing: {input_per_million: 1,\n  latency: [\n")
    err = load_error(tmp_path)
    assert err.line is not None and "bad.yaml:" in str(err) and "invalid YAML" in str(err)


@pytest.mark.parametrize("text, line, says", [
    ("name: m1\nlatency:\n\tttft_ms: 3\n", 3, "(column 1): while scanning for the next token found character '\\t' "
     "that cannot start any token (YAML indents with spaces; a tab cannot indent)"),
    ("name: m1\npricing:\n  input_per_million: 1.0\n   output_per_million: 2.0\n", 4,
     "(column 22): mapping values are not allowed here (a key indented more or less than the keys beside it"),
])
def test_hand_edit_slips_get_their_column_and_a_hint(tmp_path, text, line, says):
    """A tab or a key out of line gave the parser's words alone: they now come with the column and the usual cause."""
    write(tmp_path, "m.yaml", text)
    err = load_error(tmp_path)
    assert err.line == line and f"m.yaml:{line}: invalid YAML {says}" in str(err)


def test_duplicate_key_in_a_mapping(tmp_path):
    write(tmp_path, "dup.yaml", "name: a\nname: b\n")
    assert "dup.yaml:2: duplicate key 'name' (first on line 1)" in str(load_error(tmp_path))


def test_file_that_is_not_a_mapping_or_list(tmp_path):
    write(tmp_path, "scalar.yaml", "just a string\n")
    assert "scalar.yaml:1: expected a model mapping or a list of model mappings, got str" in str(load_error(tmp_path))


def test_list_item_that_is_not_a_mapping(tmp_path):
    write(tmp_path, "list.yaml", [model("ok"), "oops"])
    assert "list item #2: expected a model mapping, got str" in str(load_error(tmp_path))


def test_duplicate_name_across_files_names_both(tmp_path):
    write(tmp_path, "one.yaml", model("same"))
    write(tmp_path, "two.yaml", model("same"))
    err = load_error(tmp_path)
    assert err.file.name == "two.yaml" and err.field == "name"
    assert "name 'same' is already used by model 'same' in one.yaml (duplicate in two.yaml)" in str(err)


def test_duplicate_alias_across_files(tmp_path):
    write(tmp_path, "one.yaml", model("first", aliases=["shared"]))
    write(tmp_path, "two.yaml", model("second", aliases=["x", "first"]))
    err = load_error(tmp_path)
    assert (err.model, err.field) == ("second", "aliases[1]")
    lines = (tmp_path / "two.yaml").read_text().splitlines()
    assert "first" in lines[err.line - 1] and "two.yaml:" in str(err)  # the line of the alias itself
    assert "alias 'first' is already used by model 'first' in one.yaml (duplicate in two.yaml)" in str(err)


def test_alias_repeating_own_name(tmp_path):
    write(tmp_path, "m.yaml", model("m1", aliases=["m1"]))
    err = load_error(tmp_path)
    assert "field 'aliases': aliases must be distinct and differ from the model's name" in str(err)
    assert err.field == "aliases" and "m1" in (tmp_path / "m.yaml").read_text().splitlines()[err.line - 1]


@pytest.mark.parametrize("fields, field, says", [
    ({"context_window": 512, "max_output_tokens": 1024}, "max_output_tokens", "1024 exceeds context_window (512)"),
    ({"max_output_tokens": 64, "expected_output_tokens": 100}, "expected_output_tokens",
     "100 exceeds max_output_tokens (64)"),
])
def test_limits_must_be_consistent(tmp_path, fields, field, says):
    """The error named the model's first line and no field: it names the field that breaks the limit, on its line."""
    write(tmp_path, "m.yaml", model("m1", **fields))
    err = load_error(tmp_path)
    assert f"model 'm1': field '{field}': {says}" in str(err)
    assert err.field == field and (tmp_path / "m.yaml").read_text().splitlines()[err.line - 1].strip().startswith(field)


def test_similar_to_pointing_nowhere(tmp_path):
    pytest.importorskip("pickwise.registry.probes.results", reason="the loader hands every probe section to pickwise.registry.probes")
    write(tmp_path, "m.yaml", [model("m1"), model("m2", probe={"similar_to": "ghost"})])
    err = load_error(tmp_path)
    assert (err.model, err.field) == ("m2", "probe.similar_to")
    assert "ghost" in (tmp_path / "m.yaml").read_text().splitlines()[err.line - 1]
    assert "similar_to 'ghost' is not a model name or alias in this registry" in str(err)


def test_missing_directory_and_directory_without_yaml(tmp_path):
    assert "registry directory not found" in str(load_error(tmp_path / "nope"))
    assert "no *.yaml or *.yml files" in str(load_error(tmp_path))
    one = write(tmp_path, "one.yaml", model("a"))  # said "registry directory not found" of a file that is there
    assert f"{one}: is a file, not a registry directory (expected a directory of *.yaml files)" in str(load_error(one))


def test_version_changes_with_content_only(tmp_path):
    make_registry(tmp_path)
    v1 = load_registry(tmp_path).version
    assert load_registry(tmp_path).version == v1
    write(tmp_path, "a.yaml", model("alpha", aliases=["a1"], expected_output_tokens=101))
    v2 = load_registry(tmp_path).version
    assert v2 != v1
    (tmp_path / "a.yaml").rename(tmp_path / "renamed.yaml")
    assert load_registry(tmp_path).version != v2


def test_inline_probe_results_with_a_bad_score_is_one_error(tmp_path):
    # `results` is `str | list[...]`: a list selects the list branch, so no "expected a string" noise.
    rows = [{"prompt_id": "p1", "score": 0.5}, {"prompt_id": "p2", "score": 1.5}]
    write(tmp_path, "m.yaml", model("m1", probe={"results": rows}))
    err = load_error(tmp_path)
    assert len(err.errors) == 1, str(err)
    assert (err.model, err.field) == ("m1", "probe.results[1].score")
    assert "expected a number <= 1, got 1.5" in str(err) and "string" not in str(err)


def test_probe_results_of_neither_union_type_is_one_error(tmp_path):
    write(tmp_path, "m.yaml", model("m1", probe={"results": 5}))
    err = load_error(tmp_path)
    assert len(err.errors) == 1 and err.field == "probe.results"
    assert "expected a string or a list, got 5" in str(err)


def test_absurd_values_and_invisible_names_are_rejected(tmp_path):
    """Sanity bounds keep every cost/latency estimate finite, and names readable."""
    write(tmp_path, "a.yaml", model("m\u0007x"))
    write(tmp_path, "b.yaml", model("m2", pricing={"input_per_million": 1e308, "output_per_million": 1}))
    write(tmp_path, "c.yaml", model("m3", latency={"ttft_ms": 1, "output_tokens_per_s": 1e-300}))
    err = load_error(tmp_path)
    fields = sorted((e.file.name, e.field) for e in err.errors)
    assert fields == [("a.yaml", "name"), ("b.yaml", "pricing.input_per_million"), ("c.yaml", "latency.output_tokens_per_s")]
    assert "printable" in str(err)


def test_a_lone_surrogate_escape_in_a_model_is_an_error_naming_file_and_model(tmp_path):
    """It loaded, and then every /v1/models listing failed with a 500 (UTF-8 cannot encode it)."""
    write(tmp_path, "m.yaml", model("ok"))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(model("surr")) + 'notes: "x\\uDC00y"\n')
    err = load_error(tmp_path)
    assert str(err) == f"{tmp_path / 's.yaml'}:1: model 'surr': holds a lone surrogate ('\\udc00'), which is not text"


def test_a_yaml_alias_bomb_and_deep_nesting_are_quick_errors(tmp_path):
    """A 635-byte "billion laughs" file (aliases of aliases) hung the loader and the service with it:
    the duplicate-key walk, the surrogate check and the error's repr each expanded every alias."""
    import time

    levels = "".join(f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9 if i else ['"lol"'] * 9) + "]\n" for i in range(9))
    bomb = yaml.safe_dump(model("bomb")) + "tags:\n" + levels
    (tmp_path / "bomb.yaml").write_text(bomb)
    started = time.perf_counter()
    err = load_error(tmp_path)
    assert time.perf_counter() - started < 5 and err.errors[0].field.startswith("tags[")
    (tmp_path / "bomb.yaml").unlink()
    (tmp_path / "deep.yaml").write_text(yaml.safe_dump(model("deep")) + "notes: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in str(load_error(tmp_path))


def test_every_problem_of_a_file_is_reported_in_one_pass(tmp_path):
    """An unknown similar_to target on a model that also has a field error used to go unreported
    until that error was fixed."""
    write(tmp_path, "a.yaml", [
        model("good"),
        model("bad", pricing={"input_per_million": -1, "output_per_million": 2}, probe={"similar_to": "gpt-5"}),
        model("also", probe={"similar_to": "bad"}),  # an invalid model is still a model: no error here
    ])
    with pytest.raises(RegistryError) as info:
        load_registry(tmp_path)
    messages = [str(e) for e in info.value.errors]
    assert any("input_per_million" in m for m in messages)
    assert any("model 'bad'" in m and "similar_to 'gpt-5' is not a model" in m for m in messages), messages
    assert not any("similar_to 'bad'" in m for m in messages)


def test_look_alike_names_across_models_are_an_error_but_a_model_may_alias_its_own(tmp_path):
    write(tmp_path, "a.yaml", [model("gpt-4", aliases=["gpt\u20104"]), model("claude\u20104")])
    write(tmp_path, "b.yaml", model("claude-4"))
    with pytest.raises(RegistryError) as info:
        load_registry(tmp_path)
    assert [str(e).split(": ", 1)[1] for e in info.value.errors] == [
        "model 'claude-4': field 'name': name 'claude-4' looks like 'claude\u20104' of model 'claude\u20104' in a.yaml "
        "(look-alike characters); choose a name that reads differently"]


def test_names_differing_only_in_case_are_an_error_and_lookups_suggest_the_right_case(tmp_path):
    write(tmp_path, "a.yaml", model("acme-7B", aliases=["ACME-7B-chat"]))
    write(tmp_path, "b.yaml", model("acme-7b"))
    with pytest.raises(RegistryError) as info:
        load_registry(tmp_path)
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path / 'b.yaml'}:1: model 'acme-7b': field 'name': name 'acme-7b' looks like 'acme-7B' of model "
        "'acme-7B' in a.yaml (differs only in case); choose a name that reads differently"]
    (tmp_path / "b.yaml").unlink()
    assert load_registry(tmp_path).did_you_mean("ACME-7b") == " (did you mean 'acme-7B'?)"
