"""Regenerate the shipped registry (registry/defaults/*.yaml) from the priced tables in shared/data.

    python -m tools.build_defaults [--data ../shared/data] [--out registry/defaults] [--check]

Why a generator: the prices and typical answer lengths come from the data, so
they must be reproducible, and every derived number gets a comment saying where
it came from. Facts the tables do not hold (provider, size, context window,
latency) live in CATALOG below, each marked published or assumed.

Sources per table:
- MMLU-Pro and LLMRouter: list prices from `<table>.models.csv`.
- RouterBench subset and MMLU-57: only realised per-prompt costs, so each model's
  per-token prices are fitted by non-negative least squares of `cost__<m>` on
  (`in_tokens`, `out_tokens__<m>`).
- expected_output_tokens: the mean of `out_tokens__<m>` pooled over every table
  that has the model (a mean, not a median, because expected cost is linear in
  it). LLMRouter has no output tokens, so its models get a task-mix figure.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import nnls

from pickwise.predictor.data import PRICED_TABLES as TABLES  # key -> parquet stem; the key is each model's tag
from pickwise.predictor.scale import BASE_MODELS  # pretrained-only checkpoints, by name
from pickwise.registry.schema import BASE_MODEL_TAG

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data"
DEFAULT_OUT = REPO_ROOT / "registry" / "defaults"

PRICE_COLUMNS = (("price_in_per_M", "price_out_per_M"), ("input_price_per_M", "output_price_per_M"))

# Column names that are the same model under another table's name (canonical name -> others).
ALIASES = {
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("Mixtral-8x7B-Instruct-v0.1", "mistralai/mixtral-8x7b-chat"),
    "mistralai/Mistral-7B-v0.1": ("Mistral-7B-v0.1",),
    "meta-llama/Meta-Llama-3-8B": ("Meta-Llama-3-8B",),
    "Meta-Llama-3_1-8B-Instruct": ("llama-3.1-8b-instruct",),
}

# Answer lengths (tokens) assumed for LLMRouter's tasks, which record no output tokens:
# short factual / multiple-choice answers with one sentence of explanation, worked
# solutions for math, one function for code.
LLMROUTER_TASK_OUT_TOKENS = {
    "trivia_qa": 40, "natural_qa": 40, "commonsense_qa": 40, "openbook_qa": 40, "arc_challenge": 40,
    "mmlu": 40, "gpqa": 60, "commongen": 40, "gsm8k": 200, "agentverse-mgsm": 200, "math": 350,
    "agentverse-logicgrid": 250, "mbpp": 180, "human_eval": 180,
}


@dataclass(frozen=True)
class Facts:
    """What the tables do not say: who serves it, how big, its limits, and its latency."""

    provider: str
    params_b: float | None      # total parameters (billions); None for closed API models
    context_window: int
    context_source: str         # "published" (model card / provider docs) or why we assumed it
    max_output_tokens: int = 4096
    max_output_source: str = "typical host default (assumed)"
    ttft_ms: float | None = None            # API models: set explicitly
    output_tokens_per_s: float | None = None
    moe_active_b: float | None = None       # mixture-of-experts: active parameters drive speed
    # beyond text, as the provider's own API documents it; an open-weight model's depends on its server
    # (vLLM needs a tool parser, a vision build), so none is declared for those: their users say it
    capabilities: tuple[str, ...] = ()


def _open(params_b, ctx, src="published (model card)", provider="together", max_out=None, moe_active_b=None):
    max_out = max_out or min(4096, ctx // 2)
    return Facts(provider, params_b, ctx, src, max_out, "typical host default (assumed)", moe_active_b=moe_active_b)


def _api(provider, ctx, max_out, ttft, tps, src="published (provider docs)", max_src="published (provider docs)",
         capabilities=()):
    return Facts(provider, None, ctx, src, max_out, max_src, ttft, tps, capabilities=capabilities)


# function calling, image and audio inputs, and a response schema (controlled generation)
GEMINI_1_5 = ("tools", "vision", "audio", "json_schema")

CATALOG: dict[str, Facts] = {
    # --- closed API models
    "gpt-4-1106-preview": _api("openai", 128000, 4096, 700, 25, capabilities=("tools",)),  # images: gpt-4-1106-vision-preview
    "gpt-3.5-turbo-1106": _api("openai", 16385, 4096, 350, 80, capabilities=("tools",)),
    "claude-instant-v1": _api("anthropic", 100000, 4096, 450, 90, max_src="typical (assumed)"),
    "claude-v1": _api("anthropic", 100000, 4096, 900, 35, src="published (Bedrock anthropic.claude-v1, 100k)",
                      max_src="typical (assumed)"),
    "claude-v2": _api("anthropic", 100000, 4096, 900, 40),
    "gemini-1.5-flash-002": _api("google", 1048576, 8192, 350, 180, capabilities=GEMINI_1_5),
    "gemini-1.5-pro-002": _api("google", 2097152, 8192, 700, 60, capabilities=GEMINI_1_5),
    "c4ai-command-r-v01": _api("cohere", 128000, 4096, 400, 55, max_src="published (Cohere docs: 4k output)",
                               capabilities=("tools",)),
    # --- open weights, MMLU-Pro (Together-style size-tier prices)
    "Llama-2-7b-hf": _open(7, 4096),
    "Llama-2-13b-hf": _open(13, 4096),
    "Llama-2-70b-hf": _open(70, 4096),
    "meta-llama/Meta-Llama-3-8B": _open(8, 8192),
    "Meta-Llama-3-70B": _open(70, 8192),
    "Meta-Llama-3_1-8B": _open(8, 131072),
    "Meta-Llama-3_1-8B-Instruct": _open(8, 131072),
    "Meta-Llama-3_1-70B": _open(70, 131072),
    "Mistral-7B-Instruct-v0.1": _open(7, 8192),
    "Mistral-7B-Instruct-v0.2": _open(7, 32768),
    "mistralai/Mistral-7B-v0.1": _open(7, 8192),
    "Mistral-7B-v0.2-hf": _open(7, 32768),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": _open(46.7, 32768, moe_active_b=12.9),
    "Mixtral-8x7B-v0.1": _open(46.7, 32768, moe_active_b=12.9),
    "Qwen1.5-7B-Chat": _open(7, 32768),
    "Qwen1.5-72B-Chat": _open(72, 32768),
    "Qwen1.5-110B": _open(110, 32768),
    "Yi-6B": _open(6, 4096),
    "Yi-6b-Chat": _open(6, 4096),
    "Yi-34B": _open(34, 4096),
    "gemma-7b": _open(8.5, 8192),
    "mathstral-7B": _open(7, 32768),
    # --- open weights, RouterBench subset
    "WizardLM/WizardLM-13B-V1.2": _open(13, 4096, "published (Llama-2 base)"),
    "meta/code-llama-instruct-34b-chat": _open(34, 16384),
    "meta/llama-2-70b-chat": _open(70, 4096),
    "mistralai/mistral-7b-chat": _open(7, 8192, "assumed (instruct version not stated; v0.1 has 8k)"),
    "zero-one-ai/Yi-34B-Chat": _open(34, 4096),
    # --- open weights, MMLU-57 (Mistral-7B / Llama-3-8B fine-tunes)
    "meta-math/MetaMath-Mistral-7B": _open(7, 8192, "assumed (Mistral-7B-v0.1 base)"),
    "itpossible/Chinese-Mistral-7B-v0.1": _open(7, 8192, "assumed (Mistral-7B-v0.1 base)"),
    "HuggingFaceH4/zephyr-7b-beta": _open(7, 8192, "assumed (Mistral-7B-v0.1 base)"),
    "cognitivecomputations/dolphin-2.6-mistral-7b": _open(7, 16384, "published (model card: 16k fine-tune)"),
    "cognitivecomputations/dolphin-2.9-llama3-8b": _open(8, 8192, "published (Llama-3-8B base)"),
    # --- LLMRouter (NVIDIA NIM API names in its model list)
    "llama3-chatqa-1.5-8b": _open(8, 8192, provider="nvidia-nim"),
    "llama3-chatqa-1.5-70b": _open(70, 8192, provider="nvidia-nim"),
    "qwen2.5-7b-instruct": _open(7.6, 32768, "published (32k native; 128k needs YaRN)", provider="nvidia-nim"),
    "llama-3.1-nemotron-51b-instruct": _open(51, 131072, provider="nvidia-nim"),
    "llama-3.3-nemotron-super-49b-v1": _open(49, 131072, provider="nvidia-nim"),
    "mistral-7b-instruct-v0.3": _open(7, 32768, provider="nvidia-nim"),
    "gemma-2-9b-it": _open(9, 8192, provider="nvidia-nim"),
    "codegemma-7b": _open(8.5, 8192, provider="nvidia-nim"),
}

# Hosted open-model speed by (effective) size: (max billions, ttft ms, output tokens/s). Assumed,
# in line with 2024 serverless hosts: small models start fast and decode ~130 tok/s, 70B ~35 tok/s.
SPEED_TIERS = ((9.9, 200, 130), (14, 250, 90), (35, 350, 55), (52, 400, 45), (80, 450, 35), (math.inf, 600, 25))

PROVIDER_FILES = {
    "openai": "openai.yaml", "anthropic": "anthropic.yaml", "google": "google.yaml", "cohere": "cohere.yaml",
    "together": "open-weights-together.yaml", "nvidia-nim": "nvidia-nim.yaml",
}


@dataclass
class Evidence:
    """Everything the tables say about one canonical model."""

    names: list[str] = field(default_factory=list)          # column names, in table order
    tables: list[str] = field(default_factory=list)
    prices: list[tuple[float, float, str]] = field(default_factory=list)  # (in, out, source sentence)
    out_tokens: list[np.ndarray] = field(default_factory=list)
    out_token_tables: list[str] = field(default_factory=list)
    llmrouter_out: float | None = None                       # task-mix answer length (LLMRouter only)


def canonical_of(column_name: str) -> str:
    for canon, others in ALIASES.items():
        if column_name == canon or column_name in others:
            return canon
    return column_name


def _csv_prices(data: Path, stem: str) -> dict[str, tuple[float, float]]:
    path = data / f"{stem}.models.csv"
    if not path.exists():
        return {}
    frame = pd.read_csv(path)
    for col_in, col_out in PRICE_COLUMNS:
        if col_in in frame.columns:
            return {r.model: (float(getattr(r, col_in)), float(getattr(r, col_out))) for r in frame.itertuples()}
    raise ValueError(f"{path}: no price columns (expected one of {PRICE_COLUMNS})")


def fit_prices(in_tokens: np.ndarray, out_tokens: np.ndarray, cost: np.ndarray) -> tuple[float, float, float]:
    """NNLS of cost on (in, out) tokens -> ($/M in, $/M out, max relative error of the fit)."""
    design = np.column_stack([in_tokens, out_tokens]).astype(float)
    coef, _ = nnls(design, cost.astype(float))
    err = float(np.max(np.abs(design @ coef - cost)) / max(float(np.max(np.abs(cost))), 1e-12))
    return round(float(coef[0]) * 1e6, 6), round(float(coef[1]) * 1e6, 6), err


def gather(data: Path) -> dict[str, Evidence]:
    """Read the four tables: prices (listed or fitted) and output-token samples per canonical model."""
    found: dict[str, Evidence] = {}
    for key, stem in TABLES.items():
        frame = pd.read_parquet(data / f"{stem}.parquet")
        listed = _csv_prices(data, stem)
        for column in [c[3:] for c in frame.columns if c.startswith("q__")]:
            ev = found.setdefault(canonical_of(column), Evidence())
            ev.names.append(column)
            ev.tables.append(key)
            if column in listed:
                p_in, p_out = listed[column]
                ev.prices.append((p_in, p_out, f"{key}: list price from {stem}.models.csv"))
            elif f"cost__{column}" in frame.columns:
                rows = frame[["in_tokens", f"out_tokens__{column}", f"cost__{column}"]].dropna()
                p_in, p_out, err = fit_prices(rows.iloc[:, 0].to_numpy(), rows.iloc[:, 1].to_numpy(), rows.iloc[:, 2].to_numpy())
                ev.prices.append((p_in, p_out, f"{key}: NNLS fit of realised cost on (in_tokens, out_tokens), "
                                               f"{len(rows)} rows, max relative error {err:.1e}"))
            if f"out_tokens__{column}" in frame.columns:
                ev.out_tokens.append(frame[f"out_tokens__{column}"].dropna().to_numpy(float))
                ev.out_token_tables.append(key)
            if key == "llmrouter":
                shares = frame["task"].value_counts(normalize=True)
                ev.llmrouter_out = float(sum(LLMROUTER_TASK_OUT_TOKENS[t] * s for t, s in shares.items()))
    return found


def _speed(facts: Facts) -> tuple[float, float]:
    if facts.ttft_ms is not None:
        return facts.ttft_ms, facts.output_tokens_per_s
    size = facts.moe_active_b or facts.params_b
    return next((t, s) for limit, t, s in SPEED_TIERS if size <= limit)


def build_entry(canon: str, ev: Evidence) -> tuple[dict, list[str]]:
    """The YAML mapping for one model plus the comment lines that explain its numbers."""
    facts = CATALOG[canon]
    comments = [f"{canon}  (tables: {', '.join(dict.fromkeys(ev.tables))})"]
    if not ev.prices:
        raise ValueError(f"no price for {canon}")
    p_in, p_out, source = ev.prices[0]
    comments.append(f"pricing: {source}")
    for other_in, other_out, other_source in ev.prices[1:]:
        agree = math.isclose(other_in, p_in, rel_tol=1e-4) and math.isclose(other_out, p_out, rel_tol=1e-4)
        comments.append(f"  {'same' if agree else 'DIFFERENT'} ({other_in:g}/{other_out:g} $/M) in {other_source}")
    notes = []
    if any("NNLS" in s for _, _, s in ev.prices[:1]):
        notes.append("Per-token prices derived by non-negative least squares of the table's realised "
                     "per-prompt cost on (in_tokens, out_tokens).")
    if ev.out_tokens:
        pooled = np.concatenate(ev.out_tokens)
        expected = max(1, math.ceil(float(pooled.mean())))
        comments.append(f"expected_output_tokens: mean out_tokens over {len(pooled)} answers in "
                        f"{', '.join(ev.out_token_tables)} (median {float(np.median(pooled)):g}; cl100k_base counts)")
    else:
        expected = math.ceil(ev.llmrouter_out)
        comments.append("expected_output_tokens: LLMRouter records no output tokens; task-mix-weighted guess "
                        "(short answers 40-60, math 200-350, code 180 tokens)")
    ttft, tps = _speed(facts)
    size = f"{facts.params_b:g}B" + (f" MoE, {facts.moe_active_b:g}B active" if facts.moe_active_b else "") \
        if facts.params_b else "closed API model"
    comments.append(f"latency: estimated for {size} on {facts.provider} (not measured)")
    comments.append(f"context_window: {facts.context_source}; max_output_tokens: {facts.max_output_source}")
    if facts.capabilities:
        comments.append("capabilities: published (provider docs)")
    aliases = [n for n in dict.fromkeys(ev.names) if n != canon]
    entry = {
        "name": canon,
        "provider": facts.provider,
        **({"aliases": aliases} if aliases else {}),
        "pricing": {"input_per_million": p_in, "output_per_million": p_out, "per_request": 0.0},
        "latency": {"ttft_ms": ttft, "output_tokens_per_s": tps, "estimated": True},
        "context_window": facts.context_window,
        "max_output_tokens": facts.max_output_tokens,
        "expected_output_tokens": min(expected, facts.max_output_tokens),
        "tags": list(dict.fromkeys(ev.tables)) + (["open-weights"] if facts.params_b else ["api"])
                + ([BASE_MODEL_TAG] if canon in BASE_MODELS else []),
        **({"capabilities": list(facts.capabilities)} if facts.capabilities else {}),
        "enabled": True,
    }
    if notes:
        entry["notes"] = " ".join(notes)
    return entry, comments


def render_files(found: dict[str, Evidence]) -> dict[str, str]:
    """File name -> YAML text (models sorted by name within each provider file)."""
    missing = sorted(set(found) - set(CATALOG))
    if missing:
        raise ValueError(f"models in the tables but not in CATALOG: {missing}")
    by_file: dict[str, list[str]] = {}
    for canon in sorted(found):
        entry, comments = build_entry(canon, found[canon])
        body = yaml.safe_dump([entry], sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
        block = "".join(f"# {c}\n" for c in comments) + body
        by_file.setdefault(PROVIDER_FILES[entry["provider"]], []).append(block)
    header = ("# Generated by `python -m tools.build_defaults` from ../shared/data; edit CATALOG there, not this file.\n"
              "# Latencies are estimates (latency.estimated: true). Prices are USD per million tokens.\n")
    return {name: header + "\n" + "\n".join(blocks) for name, blocks in sorted(by_file.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the priced tables")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="registry folder to write")
    parser.add_argument("--check", action="store_true", help="only compare with the files in --out; exit 1 if different")
    args = parser.parse_args(argv)
    files = render_files(gather(args.data))
    if args.check:
        stale = [n for n, t in files.items() if not (args.out / n).exists() or (args.out / n).read_text() != t]
        print("up to date" if not stale else f"out of date: {', '.join(stale)}")
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
    print(f"wrote {len(files)} files, {sum(t.count('- name:') for t in files.values())} models to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
