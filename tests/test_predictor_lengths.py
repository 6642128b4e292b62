"""The output-length model (predictor/lengths.py): learning, registry fallback, MAP fit, storage."""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.predictor.lengths import (
    LENGTHS_FILE,
    FeatureMap,
    LengthModel,
    encoder_key,
    fit_length_vector,
    length_support,
    load_length_model,
    log2_tokens,
    predict_output_tokens,
    save_length_model,
    task_key,
    train_length_model,
)
from pickwise.registry.schema import ModelSpec
from tests.length_support import LONG_TABLE, probe_kind_vectors
from tests.registry_samples import model as model_entry


def spec(name: str, expected: int = 100, aliases: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec.model_validate(model_entry(name, expected_output_tokens=expected, aliases=list(aliases)))


def synthetic(n: int = 1500, dim: int = 8, models: int = 6, noise: float = 0.3, seed: int = 0):
    """Prompt vectors u and log2 counts that depend on the prompt: y = u . l_m + c_m + noise."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n, dim))
    vectors = rng.normal(scale=0.6, size=(models, dim))
    bias = rng.uniform(3, 8, size=models)
    y = u @ vectors.T + bias + rng.normal(scale=noise, size=(n, models))
    y[rng.random(y.shape) < 0.2] = np.nan  # not every model answered every prompt
    return u, y, vectors, bias


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_learns_a_prompt_dependent_length(kind):
    u, y, _, _ = synthetic()
    train, val, test = np.arange(0, 1000), np.arange(1000, 1200), np.arange(1200, 1500)
    model, history = train_length_model(u, y, train, val, [f"m{j}" for j in range(y.shape[1])], kind=kind,
                                        max_steps=1500)
    est = model.predict(u[test], model.names, form="median")
    ok = np.isfinite(y[test])
    err = np.abs(est.log2_median - y[test])[ok]
    constant = np.abs(np.nanmean(y[train], axis=0) - y[test])[ok]  # each model's mean: no prompt dependence
    assert np.median(err) < 0.35 < np.median(constant)
    assert est.sources == ["trained"] * y.shape[1]
    assert history["best_step"] > 0 and history["train_noise_var"] < 0.2
    # the mean form multiplies the median by each model's smearing factor (>= 1 for a symmetric log-noise)
    mean = model.predict(u[test], model.names, form="mean").tokens
    assert np.all(mean >= est.tokens * 0.99)


def test_model_without_length_evidence_falls_back_to_its_registry_prior():
    model = LengthModel(["known"], np.zeros((1, 4)), np.array([5.0]), np.zeros(1), 0.5, FeatureMap(),
                        aliases={"known-alias": "known"})
    u = np.zeros((3, 4))
    tokens, sources = predict_output_tokens(model, u, [spec("other", expected=321), spec("k", aliases=("known-alias",))])
    assert sources == ["registry", "trained"]
    np.testing.assert_allclose(tokens[:, 0], 321.0)
    np.testing.assert_allclose(tokens[:, 1], 32.0)
    with pytest.raises(KeyError, match="registry entry"):
        predict_output_tokens(model, u, ["other"])
    # an artifact without a length model: every model is its registry prior
    tokens, sources = predict_output_tokens(None, u, [spec("a", expected=7)])
    assert sources == ["registry"] and np.all(tokens == 7.0)


def test_map_fit_recovers_a_new_models_length_vector_from_a_few_dozen_results():
    rng = np.random.default_rng(1)
    dim, noise = 6, 0.3
    population = rng.normal(size=(40, dim)) * np.linspace(1.0, 0.2, dim)
    pop_bias = rng.normal(6.0, 1.0, size=40)
    truth, truth_bias = rng.normal(size=dim) * np.linspace(1.0, 0.2, dim), 5.5
    u = rng.normal(size=(40, dim))
    y = u @ truth + truth_bias + rng.normal(scale=noise, size=40)
    vector, bias = fit_length_vector(u, y, population, pop_bias, noise**2)
    prior_error = np.linalg.norm(population.mean(0) - truth)
    assert np.linalg.norm(vector - truth) < 0.35 * prior_error
    assert abs(bias - truth_bias) < 0.3
    fresh = rng.normal(size=(500, dim))
    assert np.corrcoef(fresh @ vector + bias, fresh @ truth + truth_bias)[0, 1] > 0.95
    # with no results the fit is the population mean
    v0, b0 = fit_length_vector(u[:0], y[:0], population, pop_bias, noise**2)
    np.testing.assert_allclose(v0, population.mean(0), atol=1e-8)
    assert b0 == pytest.approx(pop_bias.mean())


def test_fitted_vector_is_used_for_a_registered_model_and_says_so():
    u, y, vectors, bias = synthetic(n=400, models=5, seed=2)
    model = LengthModel([f"m{j}" for j in range(4)], vectors[:4], bias[:4], np.zeros(4), 0.09, FeatureMap())
    new = spec("newcomer", expected=999)
    assert model.predict(u[:5], [new]).sources == ["registry"]
    ok = np.isfinite(y[:60, 4])
    model.add_fitted("newcomer", u[:60][ok], np.exp2(y[:60, 4][ok]))
    est = model.predict(u[100:], [new], form="median")
    assert est.sources == ["fitted"]
    assert np.corrcoef(est.log2_median[:, 0], u[100:] @ vectors[4] + bias[4])[0, 1] > 0.9


def test_saved_with_the_artifact_and_ignored_after_the_encoder_changes(tiny_artifact, tmp_path):
    import shutil

    art = tmp_path / "art"
    shutil.copytree(tiny_artifact, art)
    u, y, _, _ = synthetic(n=300, dim=8, models=3)
    model, _ = train_length_model(u, y, np.arange(200), np.arange(200, 300), ["a", "b", "c"], kind="mlp",
                                  max_steps=200)
    model.meta = {"count_form": "mean", "encoder_key": encoder_key(art)}
    save_length_model(art, model)
    loaded = load_length_model(art)
    np.testing.assert_allclose(loaded.predict(u, ["a", "b", "c"]).tokens, model.predict(u, ["a", "b", "c"]).tokens,
                               rtol=1e-4)
    from pickwise.predictor.backbone import tiny_backbone
    from pickwise.predictor.inference import load_predictor

    predictor = load_predictor(art, device="cpu", backbone=tiny_backbone())
    tokens, sources = predictor.output_tokens(u[:2], ["b", spec("zzz", expected=50)])
    assert sources == ["trained", "registry"] and tokens.shape == (2, 2) and np.all(tokens[:, 1] == 50)
    # a retrained encoder makes the stored vectors meaningless: the file is ignored
    model.meta["encoder_key"] = "something-else"
    save_length_model(art, model)
    assert load_length_model(art) is None
    assert (art / LENGTHS_FILE).exists()


def test_log2_tokens_clips_empty_answers():
    np.testing.assert_allclose(log2_tokens(np.array([0.0, 1.0, 8.0, np.nan])), [0.0, 0.0, 3.0, np.nan])


def test_estimates_stay_within_what_the_model_was_seen_to_produce():
    # a linear form extrapolates on unfamiliar prompts; estimates are clipped to the training range
    # and, for a registry entry, to its max_output_tokens
    model = LengthModel(["m"], np.array([[10.0]]), np.array([0.0]), np.zeros(1), 0.5, FeatureMap(),
                        log2_range=np.array([[1.0, 6.0]]))
    est = model.predict(np.array([[-5.0], [0.3], [5.0]]), ["m"], form="median")
    np.testing.assert_allclose(est.tokens[:, 0], [2.0, 8.0, 64.0])
    capped = spec("m-spec", aliases=("m",), expected=30)
    assert model.predict(np.array([[5.0]]), [capped]).tokens[0, 0] == 64.0
    small = ModelSpec.model_validate(model_entry("m2", aliases=["m"], max_output_tokens=50, expected_output_tokens=30))
    assert model.predict(np.array([[5.0]]), [small]).tokens[0, 0] == 50.0


def test_open_ended_prompts_get_at_least_an_open_ended_answers_length(tiny_predictor, monkeypatch):
    """A model measured only on benchmark answers (a letter) would be priced for a one-token essay."""
    dim = tiny_predictor.model.config.dim
    lengths = LengthModel(["letters", "chat-a", "chat-b"], np.zeros((3, dim)), np.array([0.0, 8.0, 9.0]),
                          np.zeros(3), 0.5, FeatureMap(),
                          model_tables={"letters": ["mmlu_pro_25models"], "chat-a": ["alpacaeval_57models"],
                                        "chat-b": ["alpacaeval_57models"]})
    monkeypatch.setattr(tiny_predictor, "lengths", lengths)
    u = np.zeros((2, dim))
    tokens, _ = tiny_predictor.output_tokens(u, [spec("letters", expected=1)], np.array([0.9, 0.1]))
    assert tokens[0, 0] == pytest.approx(np.median([2.0 ** 8, 2.0 ** 9]))  # open-ended: the pool's median
    assert tokens[1, 0] == pytest.approx(1.0)  # a benchmark-like prompt keeps its own estimate


# ----------------------------------------------------------------------------- length support (round 2)
SUPPORT_TASKS = ["table_a/x", "table_b/y"]


def support_population() -> LengthModel:
    """`a-only` answers 2^2 tokens and has lengths on table A only; A's other models 2^3 and 2^5, B's 2^8..2^10."""
    names = ["a-only", "a1", "a2", "b1", "b2", "b3"]
    tables = {"a-only": ["table_a"], "a1": ["table_a"], "a2": ["table_a"], "b1": ["table_b"], "b2": ["table_b"],
              "b3": ["table_b"]}
    return LengthModel(names, np.zeros((6, 2)), np.array([2.0, 3.0, 5.0, 8.0, 9.0, 10.0]), np.zeros(6), 0.5,
                       FeatureMap(), model_tables=tables, meta={"count_form": "median"})


def test_a_model_gets_the_pools_typical_length_on_tables_it_has_no_lengths_on():
    model = support_population()
    tasks = np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]])  # table A's task, table B's, mostly B
    u = np.zeros((3, 2))
    models = [spec("a-only-spec", aliases=("a-only",))]
    found = [model.vector_for(m) for m in models]
    own = model.predict(u, models, vectors=found).tokens
    tokens = model.toward_pool(u, tasks, SUPPORT_TASKS, models, found, own)
    assert tokens[0, 0] == pytest.approx(4.0)  # its own table: its own count
    assert tokens[1, 0] == pytest.approx(2.0 ** 9)  # B's: the median of B's models
    assert tokens[2, 0] == pytest.approx(2.0 ** (0.25 * 2 + 0.75 * 9))  # blended by its support, 0.25


def test_probe_lengths_of_no_known_table_and_registry_priors_are_not_pulled():
    import dataclasses

    model = support_population()
    u, tasks = np.zeros((1, 2)), np.array([[0.0, 1.0]])
    trained = model.trained_vector(["a-only"])
    probe = dataclasses.replace(trained, source="probe")
    models = [spec("a-only-probe", aliases=("a-only",)), spec("new", expected=77)]
    found = [probe, None]
    own = model.predict(u, models, vectors=found)
    assert own.sources == ["probe", "registry"]
    np.testing.assert_allclose(model.toward_pool(u, tasks, SUPPORT_TASKS, models, found, own.tokens), own.tokens)


def test_a_trained_models_outcome_refit_is_pulled_less_the_more_outcomes_it_had():
    # a refit centred on the trained vector barely moves with a few outcomes: off its tables it must
    # keep the trained vector's pull to the pool's typical count, fading as its outcomes add up
    import dataclasses

    from pickwise.predictor.lengths import OUTCOME_LENGTH_ROWS

    model = support_population()
    u, tasks = np.zeros((1, 2)), np.array([[0.0, 1.0]])  # table B's task: none of a-only's lengths
    refit = dataclasses.replace(model.trained_vector(["a-only"]), source="outcomes")
    models = [spec("a-only-spec", aliases=("a-only",))]
    for n in (16, 5000):
        outcome = model.with_outcome({"a-only-spec": refit}, {"a-only-spec": n})
        found = [outcome.vector_for(models[0])]
        own = outcome.predict(u, models, vectors=found)
        assert own.sources == ["outcomes"] and own.tokens[0, 0] == pytest.approx(4.0)
        s = n / (n + OUTCOME_LENGTH_ROWS)
        pulled = outcome.toward_pool(u, tasks, SUPPORT_TASKS, models, found, own.tokens)
        assert pulled[0, 0] == pytest.approx(2.0 ** (s * 2 + (1 - s) * 9))


def test_a_task_twin_in_a_table_without_length_rows_counts_as_support():
    names = ["table_a/ARC-Challenge", "table_a/x", "no_lengths/arc_challenge", "no_lengths/poetry"]
    tasks = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.5, 0.0, 0.3, 0.2]])
    s = length_support(tasks, names, [["table_a"], ["table_b"]])
    np.testing.assert_allclose(s[:, 0], [1.0, 0.0, 0.8])  # the twin counts; an unrelated task does not
    np.testing.assert_allclose(s[:, 1], 0.0)  # a table with neither task
    np.testing.assert_allclose(length_support(tasks, names, [["table_a"]], twins=False)[:, 0], [0.0, 0.0, 0.5])
    assert task_key("routerbench_x/ARC-Challenge") == task_key("llmrouter_y/arc_challenge") == "arc_challenge"


def test_a_model_keeps_its_own_length_on_a_twin_of_its_tables_task():
    model = support_population()
    names = SUPPORT_TASKS + ["table_c/X", "table_c/z"]  # table C has no length rows; X is table A's x
    tasks = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    models = [spec("a-only-spec", aliases=("a-only",))]
    found = [model.vector_for(m) for m in models]
    own = model.predict(np.zeros((2, 2)), models, vectors=found).tokens
    tokens = model.toward_pool(np.zeros((2, 2)), tasks, names, models, found, own)
    assert tokens[0, 0] == pytest.approx(4.0)  # the twin: its own count
    assert tokens[1, 0] == pytest.approx((2.0 ** 5 + 2.0 ** 8) / 2)  # unrelated: every model's median (none supported)


def test_output_tokens_pulls_by_the_task_posterior_the_caller_passes(tiny_predictor, monkeypatch):
    model = support_population()
    names = tiny_predictor.meta["tasks"]  # the artifact's tasks, "<table>/<task>"
    model.model_tables = {n: [names[0].split("/", 1)[0] if t == ["table_b"] else "table_a"]
                          for n, t in model.model_tables.items()}  # B's models have lengths on the artifact's table
    monkeypatch.setattr(tiny_predictor, "lengths", model)
    u, tasks = np.zeros((1, 2)), np.zeros((1, len(names)))
    tasks[0, 0] = 1.0  # reads as that table's first task
    models = [spec("a-only-spec", aliases=("a-only",))]
    without, _ = tiny_predictor.output_tokens(u, models)
    pulled, sources = tiny_predictor.output_tokens(u, models, tasks=tasks)
    assert sources == ["trained"] and without[0, 0] == pytest.approx(4.0) and pulled[0, 0] == pytest.approx(2.0 ** 9)


# ----------------------------------------------------------------------------- evidence from probe answers

def probe_registry(directory, with_lengths: bool = True):
    """A registry of one new model registered from probe results whose answers are 2^8 tokens long on the
    long-answer prompts and 2^3 on the others (`with_lengths=False`: the same file without the column)."""
    import yaml

    from pickwise.registry.probes.probe_set import load_probe_set
    from tests.api_support import new_model

    directory.mkdir(parents=True, exist_ok=True)
    lines = ["prompt_id,score,output_tokens" if with_lengths else "prompt_id,score"]
    for e in load_probe_set():
        tokens = 256 if e.table == LONG_TABLE else 8
        if e.gradable:
            lines.append(f"{e.prompt_id},1" + (f",{tokens}" if with_lengths else ""))
        elif with_lengths:
            lines.append(f"{e.prompt_id},,{tokens}")
    (directory / "newbie.csv").write_text("\n".join(lines) + "\n")
    entry = new_model("newbie", probe={"results": "newbie.csv"}, expected_output_tokens=100)
    (directory / "newbie.yaml").write_text(yaml.safe_dump(entry, sort_keys=False))
    return directory


def test_a_model_registered_from_probe_answers_gets_their_lengths(length_predictor, tmp_path):
    """Long answers on one kind of probe prompt and short ones on another give a length vector that
    predicts the same; without the output_tokens column the model falls back to its registry prior."""
    from pickwise.registry import load_registry

    snapshot = load_registry(probe_registry(tmp_path / "reg"))
    spec = snapshot.get("newbie")
    dim = length_predictor.model.config.dim
    _, u, long = probe_kind_vectors(dim, seed=1)  # fresh prompts of the two kinds
    tokens, sources = length_predictor.output_tokens(u, [spec], snapshot=snapshot)
    assert sources == ["probe"] and length_predictor.length_vector(spec, snapshot).source == "probe"
    log2 = np.log2(tokens[:, 0])
    assert abs(np.median(log2[long]) - 8) < 0.5 and abs(np.median(log2[~long]) - 3) < 0.5
    # without the snapshot (or the column) nothing says how long its answers are: the registry prior
    assert length_predictor.output_tokens(u, [spec])[1] == ["registry"]
    plain = load_registry(probe_registry(tmp_path / "plain", with_lengths=False))
    tokens, sources = length_predictor.output_tokens(u, [plain.get("newbie")], snapshot=plain)
    assert sources == ["registry"] and np.all(tokens == 100)


def test_probe_lengths_refine_a_trained_vector_instead_of_replacing_it(length_predictor):
    from pickwise.registry import Probe, ProbeResult
    from tests.test_predictor_inference import spec as registry_spec

    trained_name = length_predictor.lengths.names[0]
    ids, u, _ = probe_kind_vectors(length_predictor.model.config.dim)
    measured = registry_spec(trained_name, Probe(results=[ProbeResult(prompt_id=p, score=1.0, output_tokens=512)
                                                          for p in ids[:50]]))
    before, sources_before = length_predictor.output_tokens(u[:50], [registry_spec(trained_name)])
    after, sources = length_predictor.output_tokens(u[:50], [measured])
    assert (sources_before, sources) == (["trained"], ["probe"])
    assert np.median(before) < 100 and np.all(after > before) and np.median(after) < 512  # pulled up, not replaced


def test_predict_estimates_say_where_each_length_comes_from(length_predictor, registry_dir, tmp_path, monkeypatch,
                                                            capsys):
    import json

    from pickwise.api.cli.main import main
    from pickwise.predictor import inference
    from tests.api_support import TRAINED, UNTRAINED

    monkeypatch.setattr(inference, "load_predictor", lambda *args, **kwargs: length_predictor)
    probe_registry(registry_dir)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "Solve 12 * 7 and show your work."}) + "\n")
    assert main(["predict", "--input", str(prompts), "--registry", str(registry_dir), "--estimates",
                 "--no-progress"]) == 0
    line = json.loads(capsys.readouterr().out)
    trained = [n for n in TRAINED if n in length_predictor.lengths.names]
    assert line["output_tokens_from"] == {"newbie": "probe", UNTRAINED: "registry", **{n: "trained" for n in trained},
                                          **{n: "registry" for n in TRAINED if n not in trained}}
    from pickwise.registry import load_registry

    assert line["output_tokens"][UNTRAINED] == load_registry(registry_dir).get(UNTRAINED).expected_output_tokens


def test_select_prices_a_probe_registered_model_by_its_probe_lengths(length_predictor, registry_dir):
    from pickwise.registry import load_registry
    from tests.api_support import PROMPT, client

    probe_registry(registry_dir)
    snapshot = load_registry(registry_dir)
    spec = snapshot.get("newbie")
    f = length_predictor.prompt_features([PROMPT])
    open_ended = length_predictor.evidence(f.u, [], f.tasks, pooled=f.pooled).open_ended
    want = length_predictor.output_tokens(f.u, [spec], open_ended, snapshot, f.tasks, options=f.options)[0][0, 0]
    prior = length_predictor.output_tokens(f.u, [spec], open_ended)[0][0, 0]
    assert abs(want - prior) > 1  # the probe lengths say something else than the registry's 100
    with client(registry_dir, length_predictor) as api:
        body = api.post("/v1/select", json={"prompt": PROMPT, "models": ["newbie"]}).json()
    newbie = next(c for c in body["candidates"] if c["name"] == "newbie")
    assert newbie["output_tokens"] == pytest.approx(want, abs=1)


def test_inline_length_only_rows_leave_the_quality_fit_to_the_scored_ones(length_predictor):
    from pickwise.registry import Probe, ProbeResult
    from tests.test_predictor_inference import spec as registry_spec

    ids, u, _ = probe_kind_vectors(length_predictor.model.config.dim)
    scored = [ProbeResult(prompt_id=p, score=1.0, output_tokens=40) for p in ids[:60]]
    length_only = [ProbeResult(prompt_id=p, output_tokens=40) for p in ids[60:90]]
    both = registry_spec("inline-new", Probe(results=scored + length_only))
    just_scores = registry_spec("inline-new", Probe(results=scored))
    vec = length_predictor.model_vector(both)
    assert vec.source == "probe" and np.allclose(vec.vector, length_predictor.model_vector(just_scores).vector)
    assert length_predictor.output_tokens(u[:3], [both])[1] == ["probe"]


def test_a_twin_keeps_a_models_own_length_but_does_not_set_the_others_typical_count():
    # table C (no length rows) has a task named like table A's: A's models keep their own count on it,
    # but they are not the only voters for the typical count the other models are pulled to there
    model = support_population()
    names = SUPPORT_TASKS + ["table_c/X"]
    tasks = np.array([[0.0, 0.0, 1.0]])
    models = [spec("a-only-spec", aliases=("a-only",)), spec("b1-spec", aliases=("b1",))]
    found = [model.vector_for(m) for m in models]
    own = model.predict(np.zeros((1, 2)), models, vectors=found).tokens
    tokens = model.toward_pool(np.zeros((1, 2)), tasks, names, models, found, own)
    assert tokens[0, 0] == pytest.approx(4.0)  # the twin: a-only's own count
    assert tokens[0, 1] == pytest.approx((2.0 ** 5 + 2.0 ** 8) / 2)  # every model votes, not A's alone


def test_lettered_prompts_are_told_from_open_ones():
    from pickwise.predictor.lengths import has_options

    lettered = ["Q?\nA. one\nB. two\nAnswer:", "Q?\n(A) one\n(B) two", "Q?\n  A) one\n  B) two", "x\nA: yes\nB: no"]
    open_ones = ["How do airplanes stay in the air?", "A. Smith wrote it.", "Plan A) fails.\nThen B",
                 "Is vitamin A. good?\nB"]
    assert has_options(lettered).all() and not has_options(open_ones).any()


def test_a_twin_counts_only_on_a_lettered_prompt():
    # the twins' tables letter ARC and MMLU where LLMRouter asks them open: on an open question of the
    # same task name a model's letter lengths do not apply, so the twin does not count there
    names = ["table_a/ARC-Challenge", "no_lengths/arc_challenge"]
    tasks = np.array([[0.0, 1.0], [0.0, 1.0]])
    s = length_support(tasks, names, [["table_a"]], options=np.array([True, False]))
    np.testing.assert_allclose(s[:, 0], [1.0, 0.0])
    np.testing.assert_allclose(length_support(tasks, names, [["table_a"]])[:, 0], [1.0, 1.0])  # texts unknown


def test_a_fit_prices_answers_by_their_own_spread_not_the_populations():
    # every answer 20 tokens: its mean count is 20, whatever the trained models' spread (smear 1.0 here,
    # 2x); with answers spread as widely as those, the prior's factor stands
    from pickwise.predictor.lengths import SMEAR_PRIOR_ROWS, own_smear

    u, _, vectors, bias = synthetic(n=200, models=4, seed=3)
    model = LengthModel([f"m{j}" for j in range(4)], vectors, bias, np.ones(4), 0.09, FeatureMap())
    steady = model.fit(u[:80], np.full(80, 20.0), name="steady")
    tokens = model.predict(u[:80], [spec("steady")], vectors=[steady]).tokens[:, 0]
    assert np.all(np.abs(tokens / 20.0 - 1.0) < 0.25), tokens[:5]  # was 2x: the population's factor
    assert own_smear(np.zeros(0), 0.7) == 0.7  # nothing observed: the prior
    spread = np.random.default_rng(0).normal(scale=1.2, size=4000)
    assert own_smear(spread, 0.0) == pytest.approx(4000 * np.log2(np.mean(np.exp2(spread))) / (4000 + SMEAR_PRIOR_ROWS),
                                                   rel=1e-9)


def test_probe_lengths_are_pulled_to_the_pool_off_the_tables_they_come_from():
    # answers measured on table A's prompts say nothing of table B's: there the pool's typical count
    import dataclasses

    model = support_population()
    u, tasks = np.zeros((2, 2)), np.array([[1.0, 0.0], [0.0, 1.0]])  # table A's task, table B's
    probe = dataclasses.replace(model.trained_vector(["a-only"]), source="probe", tables=("table_a",))
    models = [spec("newcomer")]
    own = model.predict(u, models, vectors=[probe]).tokens
    pulled = model.toward_pool(u, tasks, SUPPORT_TASKS, models, [probe], own)
    assert pulled[0, 0] == pytest.approx(4.0)  # its own table: its own count
    assert pulled[1, 0] == pytest.approx(2.0 ** 9)  # B's: B's models' median
    untold = dataclasses.replace(probe, tables=())  # no tables known: left as it is
    np.testing.assert_allclose(model.toward_pool(u, tasks, SUPPORT_TASKS, models, [untold], own), own)
