"""Does a prompt's score depend on the prompts it is batched with? And what does it cost to make sure it does not?

For each precision the service offers, scores 13 everyday prompts alone and as one batch and
prints the largest difference over every (prompt, model) pair of the shipped registry; then times
encoding 64 hundred-token prompts as the predictor now does it (each prompt alone for the int8
precisions, whose dynamic quantisation scales a whole batch at once) against batches of 32.

Run: .venv/bin/python -m bench.batch_invariance   (writes bench/results/batch_invariance.{json,md})
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_predictor import hundred_token_prompts  # noqa: E402
from pickwise.predictor import CPU_ONLY_PRECISIONS  # noqa: E402
from pickwise.predictor.inference import encode_prompt_vectors, load_predictor  # noqa: E402
from pickwise.registry import default_registry_dir, load_registry  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results")
PROMPTS = [
    "What is the capital of France?", "Write a poem about the sea in the style of Keats, with three stanzas.",
    "Solve for x: 3x + 7 = 22. Show your steps.", "hi, how are you?",
    "Explain the difference between a lease and a licence in English contract law, with examples.",
    "def f(x): return x*2  # what does this do?", "Translate 'good morning' into Japanese.",
    "Which of these numbers is prime? A) 4 B) 6 C) 7 D) 9", "Summarise the causes of the First World War.",
    "Prove that there are infinitely many primes.", "Give me a recipe for banana bread.", "What is 17*23?",
    "Tell me a joke about cats.",
]


def batched_vectors(predictor, prompts: list[str], batch_size: int) -> np.ndarray:
    """Prompt vectors computed in batches of `batch_size`, as the predictor did before (int8 included)."""
    cfg = predictor.model.config
    with torch.autocast(predictor.device.type, dtype=predictor.autocast, enabled=predictor.autocast is not None):
        u, _ = encode_prompt_vectors(predictor.model, predictor.tokenizer, prompts, predictor.device, cfg.max_len,
                                     cfg.head_frac, batch_size, False, predictor.prompt_encoder)
    return u


def per_second(fn, n: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def main() -> None:
    snapshot = load_registry(default_registry_dir())
    models = list(snapshot.enabled())
    rows = []
    for precision in ("fp32", "bf16", "int8", "onnx-int8"):
        predictor = load_predictor(precision=precision)
        vectors = [predictor.model_vector(m, snapshot) for m in models]
        alone = np.vstack([predictor.predict([p], models, snapshot=snapshot) for p in PROMPTS])
        together = predictor.predict(PROMPTS, models, snapshot=snapshot)
        old = predictor.probabilities(batched_vectors(predictor, PROMPTS, 32).astype(np.float64), vectors)
        timing = hundred_token_prompts(predictor.tokenizer, 64)
        now = per_second(lambda p=predictor, t=timing: p.prompt_vectors(t, batch_size=32), len(timing))
        before = per_second(lambda p=predictor, t=timing: batched_vectors(p, t, 32), len(timing))
        rows.append({"precision": predictor.precision, "max_diff_now": float(np.abs(alone - together).max()),
                     "max_diff_batched_32": float(np.abs(alone - old).max()),
                     "prompts_per_s_now": round(now, 1), "prompts_per_s_batched_32": round(before, 1),
                     "encoded_alone": precision in CPU_ONLY_PRECISIONS})
        print(rows[-1], flush=True)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
              "command": "python -m bench.batch_invariance", "rows": rows}
    with open(os.path.join(RESULTS, "batch_invariance.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    lines = ["# Batch invariance of prompt scores", "", f"{report['machine']}; `{report['command']}`", "",
             "| precision | max diff alone vs batched (now) | same, batches of 32 (before) | prompts/s now | prompts/s batches of 32 |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['precision']} | {r['max_diff_now']:.2e} | {r['max_diff_batched_32']:.2e} | "
              f"{r['prompts_per_s_now']} | {r['prompts_per_s_batched_32']} |" for r in rows]
    with open(os.path.join(RESULTS, "batch_invariance.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
