"""The promotion gate judges candidate − base by a paired bootstrap over the held-out prompts: a
candidate shown worse is refused, one within the noise is promoted, and the figures are logged."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pickwise.predictor.artifact import read_meta
from pickwise.predictor.promotion import PromotionRefused, judge, promote, verdict
from pickwise.predictor.refit import BOOTSTRAP_RESAMPLES, capture_figures, paired_difference, refit
from pickwise.registry import load_registry
from pickwise.registry.outcomes import Outcome, OutcomeStore, utc_timestamp
from tests.test_outcomes_fit import _worse_candidate, prompts

TRAINED = "gpt-4-1106-preview"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PICKWISE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _noise_candidate(tmp_path, predictor, snapshot) -> str:
    """Outcomes drawn at the rate the base already predicts: nothing to learn, and with this draw the
    candidate's held-out Brier is a little above the base's, by less than the noise."""
    spec = snapshot.get(TRAINED)
    texts = prompts(400, seed=100)
    f = predictor.prompt_features(texts[:5])
    rate = predictor.evidence(f.u, [predictor.model_vector(spec, snapshot)], f.tasks, pooled=f.pooled).quality.mean()
    scores = (np.random.default_rng(0).random(400) < rate).astype(float)
    with OutcomeStore(tmp_path / "noise.sqlite") as store:
        store.add([Outcome(model=TRAINED, score=float(s), prompt=t, timestamp=utc_timestamp(1.7e9 + i))
                   for i, (t, s) in enumerate(zip(texts, scores))])
        refit(predictor, snapshot, store, tmp_path / "noise", holdout=0.2)
    return str(tmp_path / "noise")


def test_a_candidate_clearly_worse_is_refused(tmp_path, home, tiny_predictor, registry_dir):
    worse = _worse_candidate(tmp_path, tiny_predictor, load_registry(registry_dir))
    brier = read_meta(worse)["refit"]["holdout"]["brier"]
    d = brier["difference"]
    assert d["n"] == BOOTSTRAP_RESAMPLES and 0 < d["lo"] <= d["point"] <= d["hi"]
    assert d["point"] == pytest.approx(brier["candidate"] - brier["base"])
    with pytest.raises(PromotionRefused, match=r"Brier .* 95% interval \[\+0\.\d+, \+0\.\d+\]"):
        promote(worse)
    record = promote(worse, force=True)
    assert record["forced"] and record["verdicts"] == {"brier": "worse"}


def test_a_candidate_within_the_noise_is_promoted_with_its_interval_logged(tmp_path, home, tiny_predictor,
                                                                            registry_dir):
    noise = _noise_candidate(tmp_path, tiny_predictor, load_registry(registry_dir))
    d = read_meta(noise)["refit"]["holdout"]["brier"]["difference"]
    assert d["point"] > 0 and d["lo"] < 0 < d["hi"]  # worse as a point estimate, not beyond the noise
    record = promote(noise)  # the point-estimate gate refused this one
    assert record["worse"] == [] and not record["forced"]
    assert record["verdicts"] == {"brier": "not distinguishable"}
    logged = json.loads((home / "promotions.jsonl").read_text().splitlines()[-1])
    assert logged["verdicts"] == {"brier": "not distinguishable"}
    assert logged["figures"]["brier"]["difference"] == d
    assert logged["figures"]["bootstrap"] == {"resamples": BOOTSTRAP_RESAMPLES, "seed": 0, "interval": 0.95,
                                              "unit": "held-out prompt"}


def test_the_rule_reads_the_whole_interval_for_each_figure():
    def figures(brier_diff, capture_diff=None):
        holdout = {"rows": 100, "prompts": 50,
                   "brier": {"base": 0.2, "candidate": 0.2 + brier_diff[0],
                             "difference": dict(zip(("point", "lo", "hi"), brier_diff), n=1000)}}
        if capture_diff is not None:
            holdout["capture"] = {"prompts": 40, "base": 0.1, "candidate": 0.1 + capture_diff[0],
                                  "difference": dict(zip(("point", "lo", "hi"), capture_diff), n=1000)}
        return {"refit": {"holdout": holdout}}

    assert judge(figures((-0.01, -0.02, -0.001))).verdicts == {"brier": "better"}
    assert judge(figures((0.01, -0.001, 0.02))).worse == []  # straddles zero
    assert judge(figures((0.0, 0.0, 0.0))).verdicts == {"brier": "not distinguishable"}  # nothing changed
    refused = judge(figures((-0.01, -0.02, -0.001), (-0.03, -0.05, -0.01)))
    assert refused.verdicts == {"brier": "better", "capture": "worse"}
    assert len(refused.worse) == 1 and refused.worse[0].startswith("headroom capture 0.0700 < base 0.1000")
    assert judge(figures((0.01, -0.001, 0.02), (-0.03, -0.05, 0.01))).worse == []
    # figures stored before the intervals: judged on the point estimate, as the gate used to
    old = {"refit": {"holdout": {"rows": 10, "brier": {"base": 0.2, "candidate": 0.21}}}}
    assert judge(old).verdicts == {"brier": "worse"} and "point estimates only" in judge(old).worse[0]
    assert verdict({"base": 0.2, "candidate": 0.19}, lower_is_better=True) == "not worse"


def test_a_candidate_that_prices_answers_worse_is_refused():
    # lengths set every cost select decides with: a refit whose held-out answer lengths are further
    # off (the whole interval of candidate − base mean |log2 error| above 0) is refused as well
    def figures(length_diff):
        lengths = {"base": 0.9, "candidate": 0.9 + length_diff[0],
                   "difference": dict(zip(("point", "lo", "hi"), length_diff), n=1000)}
        return {"refit": {"holdout": {"rows": 100, "prompts": 50,
                                      "brier": {"base": 0.2, "candidate": 0.2,
                                                "difference": {"point": 0.0, "lo": -0.01, "hi": 0.01, "n": 1000}},
                                      "lengths": {"rows": 30, "mean_abs_log2_error": lengths}}}}

    refused = judge(figures((0.3, 0.1, 0.5)))
    assert refused.verdicts == {"brier": "not distinguishable", "lengths": "worse"}
    assert refused.worse == ["answer lengths: mean |log2 error| 1.200 > base 0.900 on 30 held-out outcomes "
                             "(candidate − base +0.300, 95% interval [+0.100, +0.500])"]
    assert judge(figures((0.3, -0.1, 0.5))).worse == []


def test_brier_difference_resamples_whole_prompts_with_a_fixed_seed():
    prompt = np.array([0, 0, 0, 1, 2, 3])
    base = np.array([0.1, 0.1, 0.1, 0.2, 0.3, 0.4])
    same = paired_difference(base, base, prompt, 4)
    assert (same["point"], same["lo"], same["hi"], same["n"]) == (0.0, 0.0, 0.0, BOOTSTRAP_RESAMPLES)
    shifted = paired_difference(base, base + 0.05, prompt, 4)  # every row worse by 0.05: no noise at all
    assert shifted["lo"] == pytest.approx(0.05) and shifted["hi"] == pytest.approx(0.05)
    rng = np.random.default_rng(1)
    noisy = base + rng.normal(0, 0.05, size=6)
    assert paired_difference(base, noisy, prompt, 4) == paired_difference(base, noisy, prompt, 4)  # seeded
    # prompt 0's three rows are worse together: resampled as one prompt, they are one draw, not three
    together = base + np.array([0.1, 0.1, 0.1, 0, 0, 0])
    clustered, per_row = paired_difference(base, together, prompt, 4), paired_difference(base, together, np.arange(6), 6)
    assert clustered["point"] == pytest.approx(per_row["point"]) and clustered["std"] > 1.2 * per_row["std"]


def test_capture_difference_is_candidate_minus_base_with_its_interval():
    """A candidate that predicts the results routes better than one that guesses: its capture
    difference and whole interval are positive (the sign routing_figures' reference difference flips)."""
    rng = np.random.default_rng(0)
    n, m = 300, 3
    quality = (rng.random((n, m)) < [0.9, 0.6, 0.3]).astype(float)
    cost = np.tile([0.01, 0.002, 0.0005], (n, 1))
    predicted = {"base": rng.random((n, m)), "candidate": np.clip(quality * 0.8 + 0.1, 0, 1)}
    figures = capture_figures(quality, cost, cost, predicted, ["a", "b", "c"])
    d = figures["difference"]
    assert figures["candidate"] > figures["base"] and d["point"] == pytest.approx(figures["candidate"] - figures["base"])
    assert 0 < d["lo"] <= d["hi"] and d["n"] == BOOTSTRAP_RESAMPLES
    assert verdict(figures, lower_is_better=False) == "better"


def test_capture_without_headroom_is_a_reason_not_a_crash():
    """Held-out prompts where the dearer model always succeeds and the cheaper one always fails leave
    the oracle nothing over the best single model: capture is undefined, which `refit` records as
    capture_skipped (a ValueError saying why), not a TypeError that ends `pickwise fit`."""
    n = 30
    quality = np.tile([1.0, 0.0], (n, 1))
    cost = np.tile([0.01, 0.001], (n, 1))
    predicted = {"base": np.full((n, 2), 0.5), "candidate": np.tile([0.2, 0.8], (n, 1))}
    with pytest.raises(ValueError, match="capture undefined: the oracle has no headroom"):
        capture_figures(quality, cost, cost, predicted, ["a", "b"])
    from pickwise.api.cli.outcomes import _figures_line

    brier = {"base": 0.2, "candidate": 0.2, "difference": {}}
    assert _figures_line({"rows": 60, "prompts": 30, "brier": brier, "capture": None,
                          "capture_skipped": "capture undefined: why"}).endswith("\ncapture: not judged (capture undefined: why)")
