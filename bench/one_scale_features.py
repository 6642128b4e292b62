"""Frozen features of the shipped encoder for every row of the priced tables, AlpacaEval and the
everyday prompts: u, task posterior, pooled embedding. Cached under .cache/one_scale (minutes on 2 CPUs)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.compare_artifacts import PRICED_TABLES  # noqa: E402
from pickwise.predictor.backbone import encode_texts, length_buckets, pad_batch  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402

ALPACA = "alpacaeval_57models"
EVERYDAY = ROOT / "bench" / "everyday_prompts.jsonl"


@torch.no_grad()
def encode(predictor, prompts: list[str], batch_size: int = 64) -> dict:
    model = predictor.model
    cfg = model.config
    encoded = encode_texts(predictor.tokenizer, prompts, cfg.max_len, cfg.head_frac)
    pooled = np.zeros((len(prompts), model.bert.config.hidden_size), np.float32)
    u = np.zeros((len(prompts), cfg.dim), np.float32)
    tasks = np.zeros((len(prompts), cfg.n_tasks), np.float32)
    for batch in length_buckets([len(x) for x in encoded.ids], batch_size):
        ids, mask = pad_batch([encoded.ids[i] for i in batch])
        p = model.top(model.stem(ids, mask), mask)
        u_b, (tl, _) = model.prompt_outputs(p)
        pooled[batch], u[batch], tasks[batch] = p.numpy(), u_b.numpy(), torch.softmax(tl, -1).numpy()
    return {"pooled": pooled, "u": u, "tasks": tasks}


def encoder_key(directory: Path) -> str:
    """Hash of what the features depend on (adapter + heads), not of scale.json: refitting the
    scale must not re-encode."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and (path.name == "heads.safetensors" or "adapter" in path.parts):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_features(predictor, cache_dir: Path = ROOT / ".cache" / "one_scale") -> dict:
    """{'priced': {...rows of all four tables...}, 'alpaca': {...}, 'everyday': {...}} as numpy arrays."""
    path = cache_dir / f"{encoder_key(predictor.directory)}.npz"
    if path.exists():
        flat = dict(np.load(path, allow_pickle=False))
        out: dict = {}
        for key, value in flat.items():
            group, name = key.split("/", 1)
            out.setdefault(group, {})[name] = value
        return out
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    parts = []
    for k, stem in enumerate(PRICED_TABLES):
        table = load_table(default_data_dir() / f"{stem}.parquet")
        labels = np.full((len(table), len(predictor.model_names)), np.nan, np.float32)
        for j, name in enumerate(table.model_names):
            labels[:, predictor.trained_index(name)] = table.quality[:, j]
        feats = encode(predictor, table.prompts)
        task = np.array([f"{stem}/{t}" for t in table.task])
        parts.append({**feats, "labels": labels, "split": predictor.row_split(table).astype(str),
                      "table": np.full(len(table), k), "row": np.arange(len(table)), "task": task})
        print(f"encoded {stem}: {len(table)} prompts", flush=True)
    priced = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    import pandas as pd

    alpaca_frame = pd.read_parquet(default_data_dir() / f"{ALPACA}.parquet")
    col = "prompt" if "prompt" in alpaca_frame.columns else "instruction"
    alpaca = encode(predictor, alpaca_frame[col].fillna("").astype(str).tolist())
    print("encoded alpaca", flush=True)
    rows = [json.loads(line) for line in EVERYDAY.read_text().splitlines() if line.strip()]
    everyday = encode(predictor, [r["prompt"] for r in rows])
    everyday["kind"] = np.array([r["kind"] for r in rows])
    flat = {f"priced/{k}": v for k, v in priced.items()}
    flat.update({f"alpaca/{k}": v for k, v in alpaca.items()})
    flat.update({f"everyday/{k}": v for k, v in everyday.items()})
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, **flat)
    return load_features(predictor, cache_dir)


if __name__ == "__main__":
    from pickwise.predictor.inference import load_predictor

    p = load_predictor(None, "cpu", precision="fp32")
    f = load_features(p)
    print({g: {k: v.shape for k, v in d.items()} for g, d in f.items()})
