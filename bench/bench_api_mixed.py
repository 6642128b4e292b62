"""Select latency while a batch-plan job encodes, and how long the job takes, on loopback.

A service answers single selects and plans large batches at once (`POST /v1/plans`); both need the
encoder. This measures what one does to the other: a single client's select latency alone, then
during a plan job of --job-prompts prompts, and the job's wall time, per --runs (fresh job each run,
same server). Compare servers with the serve options passed through, e.g. `--encoder-lanes 1`.

Run:  .venv/bin/python -m bench.bench_api_mixed [--runs 3] [--encoder-lanes N] [--tag=-lanes1]
Writes bench/results/api_mixed<tag>.json and .md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_api import LOAD_GENERATOR, RESULTS, Server, free_port, prompts, resolve_artifact, tagged_registry
from bench.loadgen import closed_loop


def wait_for_job(url: str, job_id: str, timeout: float = 600.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/plans/{job_id}", timeout=30).json()["status"]
        if status in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise TimeoutError(f"plan job {job_id} not finished after {timeout:g} s")


def one_run(server: Server, job_texts: list[str], select_texts: list[str], offset: int, args) -> dict:
    """c=1 selects alone, then during a plan job; the job's status and seconds. Select prompts
    are taken in turn from `select_texts` (cycling), the job's are `job_texts`; nothing is cached."""
    def selects(start: int):
        return lambda i: {"prompt": select_texts[(start + i) % len(select_texts)]}

    cap = args.select_seconds * 200  # the loops stop on time first; this only bounds them
    alone = asyncio.run(closed_loop(server.url, "/v1/select", selects(offset), concurrency=1, total=cap,
                                    max_seconds=args.select_seconds))
    body = {"prompts": [{"id": str(i), "prompt": text} for i, text in enumerate(job_texts)], "budget": 1.0}
    started = time.perf_counter()
    job = httpx.post(server.url + "/v1/plans", json=body, timeout=60).json()
    during = asyncio.run(closed_loop(server.url, "/v1/select", selects(offset + alone.requests), concurrency=1,
                                     total=cap, max_seconds=args.select_seconds))
    status = wait_for_job(server.url, job["id"])
    return {"alone": alone.as_dict(), "during_job": during.as_dict(), "job_status": status,
            "job_seconds": time.perf_counter() - started,
            "next_offset": offset + alone.requests + during.requests}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--job-prompts", type=int, default=3000)
    parser.add_argument("--select-seconds", type=int, default=8, help="length of each c=1 select loop")
    parser.add_argument("--artifact", default=None)
    parser.add_argument("--precision", default="auto", help="forwarded to `pickwise serve`")
    parser.add_argument("--encoder-lanes", type=int, default=None, help="forwarded to `pickwise serve`")
    parser.add_argument("--models-tagged", default="mmlu_pro", metavar="TAG")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--quick-artifact", action="store_true")
    args = parser.parse_args()

    if not 1 <= args.job_prompts <= 3000:
        sys.exit("--job-prompts must be between 1 and 3000 (the bench's pool of 100-token prompts is 4000)")
    artifact, note = resolve_artifact(args)
    texts = prompts(4000)
    job_texts, select_texts = texts[:args.job_prompts], texts[args.job_prompts:]
    pool = Path(tempfile.mkdtemp(prefix="pickwise-bench-registry-"))
    models = tagged_registry(args.models_tagged, pool)
    extra = ["--precision", args.precision, "--registry", str(pool)]
    if args.encoder_lanes is not None:
        extra += ["--encoder-lanes", str(args.encoder_lanes)]
    server = Server(artifact, free_port(), Path(tempfile.gettempdir()) / "pickwise-bench-mixed-server.log", extra)
    try:
        server.wait_ready()
        precision = httpx.get(server.url + "/readyz", timeout=5).json()["predictor_precision"]
        runs, offset = [], 0
        for r in range(args.runs):
            runs.append(one_run(server, job_texts, select_texts, offset, args))
            offset = runs[-1]["next_offset"]
            row = runs[-1]
            print(f"run {r + 1}: alone p50 {row['alone']['p50_ms']:.1f} ms; during the job p50 "
                  f"{row['during_job']['p50_ms']:.1f} / p99 {row['during_job']['p99_ms']:.1f} ms; "
                  f"job {row['job_status']} in {row['job_seconds']:.1f} s", file=sys.stderr)
    finally:
        server.stop()
        shutil.rmtree(pool, ignore_errors=True)

    summary = {part: {k: statistics.median(r[part][k] for r in runs) for k in ("p50_ms", "p99_ms", "throughput")}
               for part in ("alone", "during_job")}
    summary["job_seconds"] = statistics.median(r["job_seconds"] for r in runs)
    meta = {"server_args": " ".join(extra), "predictor_precision": precision, "models": models,
            "artifact_note": note, "runs": args.runs, "job_prompts": args.job_prompts, "load_generator": LOAD_GENERATOR}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"api_mixed{args.tag}.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs},
                                                                  indent=2))
    md = "\n".join([
        "# Selects during a batch-plan job (`bench/bench_api_mixed.py`)", "",
        f"Server: `pickwise serve {meta['server_args']}` (encoder {precision}), {models} models, {note}. "
        f"One client sends selects back to back (c=1, distinct 100-token prompts) for {args.select_seconds} s alone, "
        f"then for {args.select_seconds} s right after `POST /v1/plans` with {args.job_prompts} prompts. "
        f"Medians of {args.runs} runs.", "",
        "| selects | p50 ms | p99 ms | selects/s |", "|---|---:|---:|---:|",
        *(f"| {part.replace('_', ' ')} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['throughput']:.1f} |"
          for part, s in ((p, summary[p]) for p in ("alone", "during_job"))),
        "", f"Plan job of {args.job_prompts} prompts: {summary['job_seconds']:.1f} s from submission to done.", ""])
    (RESULTS / f"api_mixed{args.tag}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
