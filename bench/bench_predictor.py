"""CPU throughput of the predictor for 100-token prompts, and the accuracy cost of each speed-up.

Variants, each on the shipped artifact (or --artifact DIR):
- fp32-unmerged: LoRA kept as separate adapter matmuls (what training runs);
- fp32-merged:   LoRA folded into the weights (the default at load time);
- bf16-autocast: merged, the encoder run under bfloat16 autocast (needs CPU bf16 instructions to pay off);
- int8-dynamic:  merged, then every nn.Linear dynamically quantised to int8;
- onnx-int8:     merged, exported to ONNX and run by ONNX Runtime with int8 weights (predictor.onnx_encoder).
Each is timed at several batch sizes (median of repeats, prompts/s), and its probabilities on
held-out MMLU-Pro prompts are compared with fp32-merged (mean/max |dp|, Brier).

Run: .venv/bin/python -m bench.bench_predictor [--threads 2] [--repeats 3]
Writes bench/results/<name>.json and .md (--name, default predictor_speed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pickwise.predictor.artifact import default_artifact_dir  # noqa: E402
from pickwise.predictor.backbone import load_tokenizer  # noqa: E402
from pickwise.predictor.data import default_data_dir, load_table  # noqa: E402
from pickwise.predictor.inference import QualityPredictor, load_predictor  # noqa: E402


def hundred_token_prompts(tokenizer, n: int, seed: int = 0) -> list[str]:
    """Real MMLU-Pro text cut to exactly 100 WordPiece tokens (98 + [CLS]/[SEP])."""
    table = load_table(default_data_dir() / "mmlu_pro_25models.parquet")
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(table))[: n * 2]:
        ids = tokenizer(table.prompts[i], add_special_tokens=False)["input_ids"]
        if len(ids) >= 98:
            out.append(tokenizer.decode(ids[:98]))
        if len(out) == n:
            break
    return out


def build(variant: str, artifact: Path) -> QualityPredictor:
    precision = {"bf16-autocast": "bf16", "int8-dynamic": "int8", "onnx-int8": "onnx-int8"}.get(variant, "fp32")
    return load_predictor(artifact, "cpu", merge=variant != "fp32-unmerged", precision=precision)


def throughput(predictor: QualityPredictor, prompts: list[str], batch_size: int, repeats: int) -> float:
    predictor.prompt_vectors(prompts[: batch_size], batch_size=batch_size)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.prompt_vectors(prompts, batch_size=batch_size)
        rates.append(len(prompts) / (time.perf_counter() - start))
    return statistics.median(rates)


def accuracy(predictor: QualityPredictor, reference: np.ndarray | None, held_out) -> dict:
    prompts, labels, models = held_out
    q = predictor.predict(prompts, models)
    observed = ~np.isnan(labels)
    out = {"brier": float(np.mean((q[observed] - labels[observed]) ** 2))}
    if reference is not None:
        diff = np.abs(q - reference)
        out.update(mean_abs_dp=float(diff.mean()), max_abs_dp=float(diff.max()))
    return out, q


def held_out_rows(predictor: QualityPredictor, n: int):
    table = load_table(default_data_dir() / "mmlu_pro_25models.parquet")
    test = np.flatnonzero(predictor.row_split(table) == "test")[:n]
    return [table.prompts[i] for i in test], table.quality[test], table.model_names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", default=str(default_artifact_dir()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--accuracy-rows", type=int, default=500)
    parser.add_argument("--variants", default="fp32-unmerged,fp32-merged,bf16-autocast,int8-dynamic,onnx-int8")
    parser.add_argument("--name", default="predictor_speed", help="results file stem under bench/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    artifact = Path(args.artifact)
    tokenizer = load_tokenizer()
    prompts = hundred_token_prompts(tokenizer, args.prompts)
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    results, reference, held = [], None, None
    for variant in args.variants.split(","):
        predictor = build(variant, artifact)
        held = held or held_out_rows(predictor, args.accuracy_rows)
        acc, q = accuracy(predictor, reference if variant != "fp32-merged" else None, held)
        if variant == "fp32-merged":
            reference = q
        row = {"variant": variant, "accuracy": acc,
               "prompts_per_s": {str(b): round(throughput(predictor, prompts, b, args.repeats), 1) for b in sizes}}
        results.append(row)
        print(f"{variant:15s} " + "  ".join(f"b{b}={row['prompts_per_s'][str(b)]:7.1f}/s" for b in sizes)
              + f"  brier={acc['brier']:.4f}", flush=True)
    # the accuracy diff of variants measured before the reference existed
    for row in results:
        if row["variant"] == "fp32-unmerged" and reference is not None:
            row["accuracy"] = accuracy(build("fp32-unmerged", artifact), reference, held)[0]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "threads": args.threads,
        "prompt_tokens": 100,
        "n_prompts": len(prompts),
        "repeats": args.repeats,
        "command": "python -m bench.bench_predictor " + " ".join(sys.argv[1:]),
        "results": results,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    lines = ["| variant | " + " | ".join(f"batch {b} (prompts/s)" for b in sizes) + " | Brier | mean abs dp | max abs dp |",
             "|---" * (len(sizes) + 4) + "|"]
    for row in results:
        a = row["accuracy"]
        lines.append(f"| {row['variant']} | " + " | ".join(str(row["prompts_per_s"][str(b)]) for b in sizes)
                     + f" | {a['brier']:.4f} | {a.get('mean_abs_dp', 0):.4f} | {a.get('max_abs_dp', 0):.4f} |")
    (out / f"{args.name}.md").write_text(
        f"Machine: {report['machine']}, {args.threads} threads; {len(prompts)} prompts of 100 tokens; "
        f"median of {args.repeats}.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
