"""What the OpenAI-compatible gateway adds to a call, and its throughput, on loopback.

Starts a loopback OpenAI-compatible upstream (bench/openai_upstream.py) and `pickwise serve` (as
bench_api does: subprocess, 127.0.0.1, default options) over the MMLU-Pro table's 25 models, each
given an endpoint at that upstream. Then, in alternating rounds at concurrency 1, with distinct
100-token prompts:
- direct: POST the upstream's /v1/chat/completions itself (answering at once);
- select: POST /v1/select (the routing decision alone);
- gateway: POST /openai/v1/chat/completions with model pickwise/auto (decision + forwarding);
- pass-through: the same naming a model (forwarding alone).
The gateway's added latency is gateway - direct, per percentile; the goal is added <= select + 2 ms.
Throughput: closed loop at concurrency 16 against an upstream answering in 200 ms (ideal 80 req/s).

Run:  .venv/bin/python -m bench.bench_gateway [--requests 300] [--rounds 3] [--tag=-T]
Writes bench/results/gateway[-T].json and .md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.bench_api import RESULTS, ROOT, Server, free_port, prompts  # noqa: E402
from bench.loadgen import closed_loop  # noqa: E402

SLOW_MS = 200
GOAL_EXTRA_MS = 2.0


def served_registry(directory: Path, upstream_url: str) -> list[str]:
    """The default registry's MMLU-Pro models, each served by the loopback upstream; their names."""
    from pickwise.registry import Endpoint, default_registry_dir, load_registry
    from pickwise.registry.store import specs_to_yaml

    # no key: the load generator's direct calls send no headers (the gateway's keyed calls are in the tests)
    endpoint = Endpoint(base_url=upstream_url, timeout_s=30.0)
    specs = [m.model_copy(update={"endpoint": endpoint})
             for m in load_registry(default_registry_dir()).enabled() if "mmlu_pro" in m.tags]
    (directory / "served.yaml").write_text(specs_to_yaml(specs))
    return [s.name for s in load_registry(directory).models]


def start_upstream(port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "bench.openai_upstream", "--port", str(port)],
                            cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the upstream did not start; see {log}")


def chat(model: str, text: str, delay_ms: int = 0) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    if delay_ms:
        body["x_delay_ms"] = delay_ms
    return body


def latency_round(server_url: str, upstream_url: str, texts: list[str], offset: int, n: int, model: str) -> dict:
    """Each arm once, n requests at concurrency 1, distinct prompts per arm and round."""
    arms = {
        "direct": (upstream_url, "/v1/chat/completions", lambda i: chat(model, texts[offset + i])),
        "select": (server_url, "/v1/select", lambda i: {"prompt": texts[offset + n + i]}),
        "gateway": (server_url, "/openai/v1/chat/completions", lambda i: chat("pickwise/auto", texts[offset + 2 * n + i])),
        "pass_through": (server_url, "/openai/v1/chat/completions", lambda i: chat(model, texts[offset + 3 * n + i])),
    }
    out = {}
    for name, (base, path, body) in arms.items():
        result = asyncio.run(closed_loop(base, path, body, concurrency=1, total=n, max_seconds=120))
        out[name] = result.as_dict()
    return out


def throughput(server_url: str, upstream_url: str, texts: list[str], model: str, seconds: float) -> dict:
    out = {}
    for name, base, path, make in (
            ("gateway", server_url, "/openai/v1/chat/completions", lambda i: chat("pickwise/auto", texts[i % len(texts)], SLOW_MS)),
            ("pass_through", server_url, "/openai/v1/chat/completions", lambda i: chat(model, texts[i % len(texts)], SLOW_MS)),
            ("direct", upstream_url, "/v1/chat/completions", lambda i: chat(model, texts[i % len(texts)], SLOW_MS)),
            # the routing decision alone at the same concurrency: what the gateway's rate is bound by
            ("select", server_url, "/v1/select", lambda i: {"prompt": texts[i % len(texts)]})):
        result = asyncio.run(closed_loop(base, path, make, concurrency=16, total=100_000, max_seconds=seconds,
                                         timeout=30))
        out[name] = result.as_dict()
    return out


def summarise(rounds: list[dict]) -> dict:
    med = {arm: {k: statistics.median(r[arm][k] for r in rounds) for k in ("p50_ms", "p90_ms", "p99_ms")}
           for arm in rounds[0]}
    errors = {arm: sum(r[arm]["errors"] for r in rounds) for arm in rounds[0]}
    added = {q: med["gateway"][q] - med["direct"][q] for q in ("p50_ms", "p99_ms")}
    forwarding = {q: med["pass_through"][q] - med["direct"][q] for q in ("p50_ms", "p99_ms")}
    return {"median_of_rounds": med, "errors": errors, "gateway_added_ms": added, "forwarding_added_ms": forwarding,
            "added_over_select": {q: added[q] / med["select"][q] for q in added},
            "goal_met": {q: added[q] <= med["select"][q] + GOAL_EXTRA_MS for q in added}}


def markdown(meta: dict, summary: dict, load: dict) -> str:
    med, added = summary["median_of_rounds"], summary["gateway_added_ms"]
    load_rows = "\n".join(f"| {arm} | {v['goodput']:.1f} | {v['p50_ms']:.0f} | {v['p99_ms']:.0f} | {v['errors']} |"
                          for arm, v in load.items())
    rows = "\n".join(f"| {arm} | {v['p50_ms']:.2f} | {v['p90_ms']:.2f} | {v['p99_ms']:.2f} | {summary['errors'][arm]} |"
                     for arm, v in med.items())
    return f"""# Gateway overhead and throughput

Command: `{meta['command']}` ({meta['date']}, {meta['machine']}). pickwise: `pickwise serve` defaults
(encoder {meta['precision']}), {meta['models']} models with an endpoint at a loopback upstream
(bench/openai_upstream.py, its own process). Client: bench/loadgen.py, closed loop, all on 2 shared cores.
Latency: medians over {meta['rounds']} alternating rounds of {meta['requests']} requests per arm at concurrency 1.

| arm | p50 ms | p90 ms | p99 ms | errors |
|---|---|---|---|---|
{rows}

Gateway added latency (gateway - direct): p50 **{added['p50_ms']:.2f} ms**, p99 **{added['p99_ms']:.2f} ms**;
as a share of `/v1/select`'s latency: p50 {summary['added_over_select']['p50_ms']:.2f}x, p99
{summary['added_over_select']['p99_ms']:.2f}x. Goal (added <= select + {GOAL_EXTRA_MS:g} ms): p50
{'met' if summary['goal_met']['p50_ms'] else 'NOT met'}, p99 {'met' if summary['goal_met']['p99_ms'] else 'NOT met'}.
Forwarding alone (pass-through - direct): p50 {summary['forwarding_added_ms']['p50_ms']:.2f} ms, p99
{summary['forwarding_added_ms']['p99_ms']:.2f} ms.

Throughput at concurrency 16 for {meta['throughput_seconds']:g} s, upstream answering in {SLOW_MS} ms (ideal
{16 * 1000 / SLOW_MS:.0f} req/s); `select` is /v1/select alone at concurrency 16 (no upstream), the routing's own rate:

| arm | req/s | p50 ms | p99 ms | errors |
|---|---|---|---|---|
{load_rows}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per arm and round (default 300)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--throughput-seconds", type=float, default=10.0)
    parser.add_argument("--tag", default="", help="suffix of the result files (e.g. -T)")
    args = parser.parse_args()

    from pickwise.predictor.artifact import default_artifact_dir

    work = Path(tempfile.mkdtemp(prefix="pickwise-bench-gateway-"))
    (work / "registry").mkdir()
    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    upstream = start_upstream(up_port, work / "upstream.log")
    server = None
    try:
        names = served_registry(work / "registry", upstream_url + "/v1")
        server = Server(default_artifact_dir(), free_port(), work / "server.log", ["--registry", str(work / "registry")])
        print(f"waiting for pickwise ({len(names)} served models) ...", file=sys.stderr)
        server.wait_ready()
        n, r = args.requests, args.rounds
        texts = prompts(4 * n * r + 20)
        warm = texts[-20:]
        asyncio.run(closed_loop(server.url, "/openai/v1/chat/completions", lambda i: chat("pickwise/auto", warm[i]),
                                concurrency=1, total=20, max_seconds=60))
        rounds = []
        for k in range(r):
            print(f"round {k + 1}/{r}", file=sys.stderr)
            rounds.append(latency_round(server.url, upstream_url, texts, 4 * n * k, n, names[0]))
        load = throughput(server.url, upstream_url, texts, names[0], args.throughput_seconds)
        precision = httpx.get(server.url + "/readyz", timeout=5).json().get("predictor_precision")
    finally:
        if server is not None:
            server.stop()
        upstream.terminate()
        upstream.wait(10)
    summary = summarise(rounds)
    meta = {"command": "python -m bench.bench_gateway " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "precision": precision, "models": len(names),
            "rounds": r, "requests": n, "throughput_seconds": args.throughput_seconds}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"gateway{args.tag}.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "throughput": load, "rounds": rounds}, indent=2))
    (RESULTS / f"gateway{args.tag}.md").write_text(markdown(meta, summary, load))
    print(markdown(meta, summary, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
