"""Cost/latency arithmetic, context fit and the stated token counter."""
from __future__ import annotations

import numpy as np
import pytest

from pickwise.registry import (
    TOKENIZER_NAME,
    ModelSpec,
    count_tokens,
    count_tokens_batch,
    estimate_cost_usd,
    estimate_latency_ms,
    fits_context,
    output_room,
)
from tests.registry_samples import model

SPEC = ModelSpec.model_validate(model(
    "m", pricing={"input_per_million": 3.0, "output_per_million": 15.0, "per_request": 0.001},
    latency={"ttft_ms": 400, "output_tokens_per_s": 50}, context_window=4096, max_output_tokens=1000,
    expected_output_tokens=200,
))


def test_cost_uses_expected_output_tokens_by_default():
    assert estimate_cost_usd(SPEC, 1000) == pytest.approx(1000 * 3 / 1e6 + 200 * 15 / 1e6 + 0.001)
    assert estimate_cost_usd(SPEC, 1000, 10) == pytest.approx(0.003 + 0.00015 + 0.001)
    assert estimate_cost_usd(SPEC, 0, 0) == pytest.approx(0.001)


def test_latency_is_ttft_plus_decode_time():
    assert estimate_latency_ms(SPEC, 1000) == pytest.approx(400 + 200 / 50 * 1000)
    assert estimate_latency_ms(SPEC, 1000, 0) == pytest.approx(400)


def test_fits_context():
    assert fits_context(SPEC, 3896)          # 3896 + 200 == 4096
    assert not fits_context(SPEC, 3897)
    assert not fits_context(SPEC, 10, 1001)  # over max_output_tokens
    assert fits_context(SPEC, 3096, 1000)


def test_output_room_is_what_the_window_leaves_up_to_max_output_tokens():
    assert output_room(SPEC, 10) == 1000      # max_output_tokens binds
    assert output_room(SPEC, 3596) == 500     # the window (4096) binds
    assert output_room(SPEC, 5000) == -904    # the prompt alone overflows it
    assert output_room(SPEC, np.array([10, 3596])).tolist() == [1000, 500]


def test_negative_token_counts_are_rejected():
    with pytest.raises(ValueError, match="prompt_tokens must be >= 0"):
        estimate_cost_usd(SPEC, -1)
    with pytest.raises(ValueError, match="output_tokens must be >= 0"):
        estimate_latency_ms(SPEC, 1, -5)


def test_token_counter_is_wordpiece_without_special_tokens_or_truncation():
    assert "WordPiece" in TOKENIZER_NAME
    assert count_tokens("") == 0
    assert count_tokens("Hello world") == 2
    assert count_tokens("word " * 5000) == 5000  # no 128/512-token truncation
    texts = ["Hello world", "", "unbelievably tokenised"]
    assert count_tokens_batch(texts) == [count_tokens(t) for t in texts]
    assert count_tokens_batch([]) == []


def test_what_wordpiece_calls_unknown_is_counted_for_its_length():
    """A word over 100 characters was one [UNK]: 200,000 characters without a space counted as 1 token,
    so such a prompt fit every context window and cost nothing."""
    assert count_tokens("x" * 100) == 50 and count_tokens("x" * 101) == 51  # by bytes, at WordPiece's own rate
    assert count_tokens("a" * 200_000) == 100_000
    assert count_tokens("hello \U0001F600\U0001F600\U0001F600 world") == 5  # unknown characters: one token each
    assert count_tokens("\U0001F600" * 100_000) == 200_000  # 4 bytes each
    texts = ["x" * 101, "plain words", "\U0001F600" * 3]
    assert count_tokens_batch(texts) == [count_tokens(t) for t in texts] == [51, 2, 3]
