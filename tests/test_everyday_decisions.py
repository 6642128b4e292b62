"""Integration: the shipped registry and predictor on everyday prompts, as a new user meets them.

The decisions issue #21 found unacceptable (a maths fine-tune for a poem, Yi-34B-Chat over gpt-4 for
"hi", a floor met by a guess) and the base-model rule: prompts read as open-ended do not go to base
(not instruction-tuned) models unless the request allows it.
"""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.api.errors import NoFeasibleModel
from pickwise.api.schemas import PlanRequest, SelectRequest
from pickwise.api.service import PickwiseService
from pickwise.registry import Registry, default_registry_dir

pytestmark = pytest.mark.integration

POEM = "Write a short poem about the sea at dawn."
HELLO = "hi, how are you?"
PROOF = "Prove that for every prime p > 3, p^2 - 1 is divisible by 24."
QUIZ = ("Question: Which of the following best describes the function of mitochondria?\n"
        "A. protein synthesis\nB. ATP production\nC. lipid storage\nD. DNA replication\nAnswer:")
BASE = "base model, open-ended prompt"


@pytest.fixture(scope="module")
def service():
    from pickwise.predictor.inference import load_predictor

    return PickwiseService(Registry(default_registry_dir()), load_predictor())


def quality(decision, name: str) -> float:
    return next(c.quality for c in decision.candidates if c.name == name)


def test_open_ended_prompts_go_to_instruction_tuned_models(service):
    base = {s.name for s in service.registry.refresh().models if s.base_model}
    assert len(base) >= 10  # the shipped registry tags its pretrained-only checkpoints
    for prompt in (POEM, HELLO):
        d = service.select(SelectRequest(prompt=prompt, objective="max_quality"))
        assert d.open_ended >= 0.5 and d.chosen[0] not in base
        assert {c.name for c in d.candidates if BASE in c.excluded_by} == base
        cheapest = service.select(SelectRequest(prompt=prompt))
        assert cheapest.chosen[0] not in base
        allowed = service.select(SelectRequest(prompt=prompt, allow_base_models=True))
        assert not any(BASE in c.excluded_by for c in allowed.candidates)
    quiz = service.select(SelectRequest(prompt=QUIZ))
    assert quiz.open_ended < 0.5 and not any(BASE in c.excluded_by for c in quiz.candidates)


def test_the_issue_decisions_come_out_as_a_user_expects(service):
    poem = service.select(SelectRequest(prompt=POEM, objective="max_quality"))
    assert poem.chosen != ["meta-math/MetaMath-Mistral-7B"]
    assert quality(poem, "gpt-4-1106-preview") > quality(poem, "meta-math/MetaMath-Mistral-7B")
    hello = service.select(SelectRequest(prompt=HELLO, objective="max_quality"))
    assert quality(hello, "gpt-4-1106-preview") > quality(hello, "zero-one-ai/Yi-34B-Chat")
    assert hello.chosen != ["zero-one-ai/Yi-34B-Chat"]
    # no model has results on proofs: a guess does not meet the floor, and the answer says how to
    # allow it (alone, or with the lower floor the guesses reach), and that way out works
    with pytest.raises(NoFeasibleModel) as info:
        service.select(SelectRequest(prompt=PROOF, min_quality=0.7))
    way = info.value.way_out or info.value.way_out_together
    assert way.get("allow_low_confidence") is True
    proof = service.select(SelectRequest(prompt=PROOF, min_quality=way.get("min_quality", 0.7), allow_low_confidence=True))
    assert proof.chosen != ["zero-one-ai/Yi-34B-Chat"] and proof.low_confidence
    assert quality(proof, "gpt-4-1106-preview") > quality(proof, "gpt-3.5-turbo-1106")


def test_a_base_model_asked_for_by_name_gets_the_way_out(service):
    with pytest.raises(NoFeasibleModel) as info:
        service.select(SelectRequest(prompt=POEM, models=["Meta-Llama-3-70B"]))
    assert info.value.blocking["Meta-Llama-3-70B"] == [BASE] and info.value.way_out == {"allow_base_models": True}
    d = service.select(SelectRequest(prompt=POEM, models=["Meta-Llama-3-70B"], allow_base_models=True))
    assert d.chosen == ["Meta-Llama-3-70B"]


def test_a_fallback_held_back_by_the_base_model_rule_gets_that_way_out(service):
    request = {"prompt": "hi", "min_quality": 0.5, "on_infeasible": "cheapest", "models": ["Llama-2-7b-hf"]}
    with pytest.raises(NoFeasibleModel) as info:
        service.select(SelectRequest.model_validate(request))
    assert info.value.way_out == {"allow_base_models": True}
    d = service.select(SelectRequest.model_validate({**request, "allow_base_models": True}))
    assert d.chosen == ["Llama-2-7b-hf"] and d.fallback == "cheapest"


def test_a_plan_keeps_open_ended_prompts_from_base_models(service):
    base = [s.name for s in service.registry.refresh().models if s.base_model]
    prompts = [{"id": "poem", "prompt": POEM}, {"id": "quiz", "prompt": QUIZ}]
    request = {"prompts": prompts, "models": [base[0], "gemma-2-9b-it"], "budget": 1.0}
    plan = service.plan(PlanRequest.model_validate(request))
    assigned = {a.id: a.model for a in plan.assignments}
    assert assigned["poem"] == "gemma-2-9b-it"
    allowed = service.workload(PlanRequest.model_validate({**request, "allow_base_models": True})).workload.allowed
    assert allowed.all()


def test_a_plan_held_back_by_the_base_model_rule_says_so(service):
    from pickwise.selector.errors import PlanInfeasible

    base = [s.name for s in service.registry.refresh().models if s.base_model]
    request = {"prompts": [{"id": "poem", "prompt": POEM}, {"id": "quiz", "prompt": QUIZ}], "models": [base[0]],
               "budget": 1.0}
    with pytest.raises(PlanInfeasible, match=r": poem \(1 of them for the base-model rule: .*--allow-base-models") as info:
        service.plan(PlanRequest.model_validate(request))
    assert info.value.context["way_out"] == {"allow_base_models": True}
    service.plan(PlanRequest.model_validate({**request, "allow_base_models": True}))


def test_a_floor_over_every_guess_gets_a_way_out_of_two_changes(service):
    # every quality on the proof is low-confidence: no floor counts them, and allowing them alone does
    # not reach a floor above the best; the answer names both changes together
    with pytest.raises(NoFeasibleModel) as info:
        service.select(SelectRequest(prompt=PROOF, min_quality=0.99))
    together = info.value.way_out_together
    assert info.value.way_out == {} and together["allow_low_confidence"] is True
    assert "both together" in str(info.value)
    d = service.select(SelectRequest(prompt=PROOF, **together))
    assert d.low_confidence and d.quality >= together["min_quality"]


def test_a_floor_of_zero_is_no_floor(service):
    # every quality on the poem is a guess; a floor of 0 asks for nothing, so it must not hold them back
    none = service.select(SelectRequest(prompt=POEM))
    zero = service.select(SelectRequest(prompt=POEM, min_quality=0.0))
    assert zero.chosen == none.chosen and zero.low_confidence
    prompts = [{"id": "poem", "prompt": POEM}]
    plan = service.plan(PlanRequest.model_validate({"prompts": prompts, "min_quality": 0, "budget": 1.0}))
    assert plan.assignments[0].model == service.plan(
        PlanRequest.model_validate({"prompts": prompts, "budget": 1.0})).assignments[0].model


def test_a_plan_over_disabled_models_names_them(tmp_path):
    import shutil

    from pickwise.api.errors import RequestFieldError
    from pickwise.predictor.inference import load_predictor

    shutil.copytree(default_registry_dir(), tmp_path / "registry")
    path = tmp_path / "registry" / "anthropic.yaml"
    text = path.read_text()
    block = text.index("- name: claude-instant-v1")
    end = text.index("enabled: true", block)
    path.write_text(text[:end] + "enabled: false" + text[end + len("enabled: true"):])
    service = PickwiseService(Registry(tmp_path / "registry"), load_predictor())
    request = {"prompts": [{"id": "a", "prompt": POEM}], "models": ["claude-instant-v1"], "budget": 1.0}
    with pytest.raises(RequestFieldError, match="claude-instant-v1 is disabled"):
        service.plan(PlanRequest.model_validate(request))


def test_a_prompt_the_encoder_cannot_read_is_flagged_and_meets_no_floor(service):
    # emoji and Thai are [UNK] to MiniLM's vocabulary: the encoder sees an empty prompt, so every
    # quality is a guess; one unknown word in an English request still reads
    from pickwise.api.schemas import PredictRequest

    for prompt in ("🎉🎉🎉", "สวัสดีครับ"):
        d = service.select(SelectRequest(prompt=prompt))
        assert d.unreadable and all(c.low_confidence.startswith("unreadable prompt") for c in d.candidates)
        assert d.reads_as == {} and all(c.support == 0.0 and c.evidence_rows == 0.0 for c in d.candidates)
        with pytest.raises(NoFeasibleModel, match="cannot read the prompt") as info:
            service.select(SelectRequest(prompt=prompt, min_quality=0.3))
        assert info.value.context["unreadable"] is True
    readable = service.select(SelectRequest(prompt="Translate 'สวัสดีครับ' into English, please."))
    assert not readable.unreadable
    lines = service.predict(PredictRequest.model_validate(
        {"prompts": [{"id": "emoji", "prompt": "😀 👍"}, {"id": "quiz", "prompt": QUIZ}], "models": ["gemma-2-9b-it"]}))
    assert [line.unreadable for line in lines.predictions] == [True, None]
    plan = service.plan(PlanRequest.model_validate(
        {"prompts": [{"id": "emoji", "prompt": "😀 👍"}, {"id": "quiz", "prompt": QUIZ}], "budget": 1.0}))
    assert plan.unreadable == ["emoji"]
    assert "emoji" in plan.guessed  # a budget plan takes a guess at face value, and says it did
    floored = service.plan(PlanRequest.model_validate(
        {"prompts": [{"id": "quiz", "prompt": QUIZ}], "budget": 1.0, "min_quality": 0.1}))
    assert floored.guessed == []  # under a floor only qualities with evidence count
    from pickwise.api.cli.planning import plan_summary

    summary = plan_summary(plan, 2).splitlines()
    assert any(line.startswith("1 prompt(s) unreadable") and line.endswith(": emoji") for line in summary)
    assert summary[-1].startswith(f"{len(plan.guessed)} prompt(s) assigned on a low-confidence quality")


def test_a_decision_says_which_tasks_set_the_level_of_its_qualities(service):
    # a trivia question gets ~0.2 from every model because LLMRouter grades trivia by exact match:
    # the decision names the task it read the prompt as, so the level can be understood
    trivia = service.select(SelectRequest(prompt="Which Irish boxer was nicknamed the Clones Cyclone?"))
    top, share = next(iter(trivia.reads_as.items()))
    assert top == "llmrouter_dcrouter_9models/trivia_qa" and share > 0.5
    assert max(c.quality for c in trivia.candidates if not c.low_confidence) < 0.4
    quiz = service.select(SelectRequest(prompt=QUIZ))
    assert 0 < len(quiz.reads_as) <= 3 and sum(quiz.reads_as.values()) <= 1.0 + 1e-9
    assert all(v >= 0.05 for v in quiz.reads_as.values()) and "trivia_qa" not in next(iter(quiz.reads_as))


def test_no_model_is_priced_for_a_few_tokens_on_a_poem(service):
    # gpt-3.5-turbo-1106 has RouterBench letters and AlpacaEval answers: its own length vector priced
    # a poem at 9 tokens (the others ~200), so it looked the cheapest for every open-ended prompt
    d = service.select(SelectRequest(prompt="Write a poem about rain in Paris."))
    assert d.open_ended >= 0.5
    tokens = {c.name: c.output_tokens for c in d.candidates}
    assert min(tokens.values()) >= 100, sorted(tokens.items(), key=lambda kv: kv[1])[:3]
    # an open question read as LLMRouter's arc_challenge: RouterBench's one-letter ARC answers (its twin)
    # are not the count every other model is pulled to
    d = service.select(SelectRequest(prompt="How do airplanes stay in the air?"))
    tokens = {c.name: c.output_tokens for c in d.candidates}
    assert tokens["cognitivecomputations/dolphin-2.6-mistral-7b"] >= 100 and tokens["gemini-1.5-flash-002"] >= 100
    # read as LLMRouter's mmlu, whose twin MMLU-57 letters its questions: an open one is answered in prose,
    # a lettered one with a letter
    will = service.select(SelectRequest(prompt="What is the difference between a will and a trust?"))
    quiz = service.select(SelectRequest(prompt=QUIZ))
    for name in ("gpt-4-1106-preview", "claude-v2"):
        assert next(c.output_tokens for c in will.candidates if c.name == name) >= 100
        assert next(c.output_tokens for c in quiz.candidates if c.name == name) <= 5


def test_a_probe_registered_model_says_where_its_evidence_is(service):
    # 220 MMLU-Pro probe results, nearly all right: trusted on MMLU-Pro-like prompts, placed on the
    # joint scale and flagged elsewhere (it was unflagged everywhere, and won every plan)
    from pickwise.predictor.scale import LOW_SUPPORT
    from pickwise.registry import Probe, ProbeResult
    from pickwise.registry.probes.probe_set import probe_index
    from tests.test_predictor_inference import spec

    ids = [pid for pid, entry in probe_index().items() if entry.table == "mmlu_pro_25models"]
    strong = spec("acme-strong", Probe(results=[ProbeResult(prompt_id=i, score=float(k % 50 != 0))
                                                for k, i in enumerate(ids)]))
    predictor = service.predictor
    vector = predictor.model_vector(strong)
    assert vector.source == "probe" and vector.task_rows.sum() == len(ids) and vector.ability is not None
    mmlu_pro = next(e.prompt for e in probe_index().values() if e.table == "mmlu_pro_25models")
    code = "Write a Python function that merges two sorted lists."
    result = predictor.predict_with_evidence([mmlu_pro, code, POEM], [strong])
    assert result.support[0, 0] >= LOW_SUPPORT and "acme-strong" not in result.low_confidence[0]
    for i in (1, 2):
        assert result.support[i, 0] < LOW_SUPPORT
        assert "probe results on mmlu_pro" in result.low_confidence[i]["acme-strong"]
    assert np.all((result.quality > 0.5) & (result.quality < 1.0))  # a strong model stays strong, flagged


def test_a_model_like_a_probe_registered_one_has_no_evidence_of_its_own(service, tmp_path):
    # scored as its target is, but its target's probe results are not its own: it showed the target's
    # support and evidence rows as if they were
    from pickwise.registry import Probe, ProbeResult
    from pickwise.registry.probes.probe_set import probe_index
    from pickwise.registry.snapshot import RegistrySnapshot
    from tests.test_predictor_inference import spec

    ids = [pid for pid, entry in probe_index().items() if entry.table == "mmlu_pro_25models"]
    strong = spec("acme-strong", Probe(results=[ProbeResult(prompt_id=i, score=float(k % 50 != 0))
                                                for k, i in enumerate(ids)]))
    alike = spec("acme-alike", Probe(similar_to="acme-strong"))
    snapshot = RegistrySnapshot((strong, alike), "v", tmp_path)
    mmlu_pro = next(e.prompt for e in probe_index().values() if e.table == "mmlu_pro_25models")
    result = service.predictor.predict_with_evidence([mmlu_pro, POEM], [strong, alike], snapshot=snapshot)
    np.testing.assert_allclose(result.quality[:, 1], result.quality[:, 0])
    assert result.support[0, 0] >= 0.5 and np.isnan(result.support[:, 1]).all() and np.isnan(result.rows[:, 1]).all()
    assert all(low["acme-alike"] == "no probe results; scored like 'acme-strong'" for low in result.low_confidence)


def test_a_probe_registered_model_keeps_its_probe_support_after_a_refit_adds_outcomes(service, tmp_path):
    # `fit` fits it to its probe results and outcomes together: forty legal outcomes must not take away
    # the support its 220 MMLU-Pro probe results gave it (it lost it, and was "fitted to only 40 outcomes")
    from pickwise.predictor.refit import Features, OutcomeRows, fit_vectors
    from pickwise.predictor.scale import LOW_SUPPORT
    from pickwise.registry import Probe, ProbeResult
    from pickwise.registry.outcomes import prompt_sha256
    from pickwise.registry.probes.probe_set import probe_index
    from pickwise.registry.snapshot import RegistrySnapshot
    from tests.test_predictor_inference import spec

    ids = [pid for pid, entry in probe_index().items() if entry.table == "mmlu_pro_25models"]
    strong = spec("acme-strong", Probe(results=[ProbeResult(prompt_id=i, score=float(k % 50 != 0))
                                                for k, i in enumerate(ids)]))
    predictor = service.predictor
    legal = [f"Is a {k}-month non-compete clause enforceable against a software engineer?" for k in range(40)]
    f, shas = predictor.prompt_features(legal), [prompt_sha256(t) for t in legal]
    features = Features(*({s: part[i] for i, s in enumerate(shas)} for part in (f.u, f.tasks, f.pooled)))
    rows = OutcomeRows(["acme-strong"] * 40, np.array([1.0, 0.0] * 20), shas, ["2026-12-01T00:00:00Z"] * 40,
                       np.full(40, np.nan), texts=dict(zip(shas, legal)))
    fitted = fit_vectors(predictor, RegistrySnapshot((strong,), "v", tmp_path), rows, features, np.ones(40, bool))
    refitted = predictor.with_outcome_vectors(fitted)
    assert refitted.model_vector(strong).source == "outcomes"
    mmlu_pro = next(e.prompt for e in probe_index().values() if e.table == "mmlu_pro_25models")
    code = "Write a Python function that merges two sorted lists."
    result = refitted.predict_with_evidence([mmlu_pro, code], [strong])
    assert result.support[0, 0] >= LOW_SUPPORT and "acme-strong" not in result.low_confidence[0]
    assert "placed on the joint ability scale from its 220 probe results on mmlu_pro and its 40 outcomes (" \
        in result.low_confidence[1]["acme-strong"]


def test_universe_over_base_models_names_the_switch_for_open_ended_prompts(tmp_path, capsys):
    from pickwise.api.cli.main import main

    path = tmp_path / "poem.jsonl"
    path.write_text('{"id": "poem", "prompt": "Write a short poem about the sea at dawn."}\n')
    args = ["universe", "--input", str(path), "--max-models", "1", "--models", "Llama-2-7b-hf,Yi-34B", "--quiet"]
    assert main(args) == 2
    assert "--allow-base-models lets them" in capsys.readouterr().err
    assert main([*args, "--allow-base-models"]) == 0
