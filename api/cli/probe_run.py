"""`pickwise probe run`: send the probe set to a model's endpoint, grade the answers, write the results.

Calls go through the gateway's pooled upstream client (`pickwise.api.gateway`), at most
`--concurrency` at once. Each answer is appended to `probes/NAME.responses.jsonl` beside the
model's YAML file as soon as it arrives, so an interrupted run picks up where it stopped; a call
that fails with 408/429/5xx or a transport error is retried with backoff, a client error (400,
401, ...) is counted and left for the next run. The answers `probe score` can grade (multiple-choice
prompts with a reference letter) are graded into `probes/NAME.csv` (`prompt_id,score`).
"""
from __future__ import annotations

import asyncio
import csv
import json
import re
import sys
from pathlib import Path

from pickwise.api.cli.options import CliError
from pickwise.api.gateway import UpstreamClient, UpstreamError, upstream_body
from pickwise.registry import ModelSpec
from pickwise.registry.probes.grading import grade_response
from pickwise.registry.probes.probe_set import ProbeEntry
from pickwise.registry.probes.results import MIN_PROBE_RESULTS

RETRIES = 3
BACKOFF_S = 1.0


def file_stem(name: str) -> str:
    """A model name as a file name ('/' and other unsafe characters become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def read_done(path: Path) -> dict[str, str]:
    """prompt_id -> response of a previous run; a line cut short by an interruption is ignored."""
    done: dict[str, str] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("prompt_id"), str) \
                and isinstance(record.get("response"), str):
            done[record["prompt_id"]] = record["response"]
    return done


def _content(body: bytes) -> str:
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UpstreamError("protocol", "the answer is not a chat completion", retryable=False) from None
    return content if isinstance(content, str) else ""


async def _ask(client: UpstreamClient, spec: ModelSpec, entry: ProbeEntry, max_tokens: int) -> str:
    body = {"model": spec.name, "messages": [{"role": "user", "content": entry.prompt}],
            "temperature": 0, "max_tokens": max_tokens}
    for attempt in range(RETRIES + 1):
        try:
            reply = await client.complete(spec, upstream_body(body, spec))
        except UpstreamError as exc:
            if not exc.retryable or attempt == RETRIES:
                raise
            await asyncio.sleep(BACKOFF_S * 2 ** attempt)
            continue
        if reply.status >= 400:
            raise UpstreamError("client_error", f"answered {reply.status}: {reply.body[:200]!r}", status=reply.status,
                                retryable=False)
        return _content(reply.body)
    raise AssertionError("unreachable")


async def collect(spec: ModelSpec, entries: list[ProbeEntry], responses: Path, *, concurrency: int,
                  max_tokens: int, progress: bool, client: UpstreamClient | None = None) -> tuple[dict[str, str], list[str]]:
    """Every entry's response (earlier runs' included) and the failures of this run."""
    from tqdm import tqdm

    done = read_done(responses)
    todo = [e for e in entries if e.prompt_id not in done]
    failures: list[str] = []
    own = client is None
    client = client or UpstreamClient(max_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc=f"probe {spec.name}", unit="prompt",
               disable=not progress, file=sys.stderr)
    responses.parent.mkdir(parents=True, exist_ok=True)
    with responses.open("a", encoding="utf-8") as out:
        async def one(entry: ProbeEntry) -> None:
            async with gate:
                try:
                    text = await _ask(client, spec, entry, max_tokens)
                except UpstreamError as exc:
                    failures.append(f"{entry.prompt_id}: {exc}")
                    return
                finally:
                    bar.update(1)
            done[entry.prompt_id] = text
            out.write(json.dumps({"prompt_id": entry.prompt_id, "response": text}, ensure_ascii=False) + "\n")
            out.flush()  # each answer kept at once: a run stopped midway resumes from here

        try:
            await asyncio.gather(*(one(e) for e in todo))
        finally:
            bar.close()
            if own:
                await client.aclose()
    return done, failures


def grade(entries: list[ProbeEntry], done: dict[str, str], output: Path) -> tuple[int, float]:
    """Write `prompt_id,score` for every graded answer; (how many, their mean)."""
    scored = [(e.prompt_id, s) for e in entries if e.prompt_id in done
              for s in [grade_response(e, done[e.prompt_id])] if s is not None]
    with output.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("prompt_id", "score"))
        writer.writerows((pid, f"{score:g}") for pid, score in scored)
    return len(scored), (sum(s for _, s in scored) / len(scored) if scored else 0.0)


def run(spec: ModelSpec, yaml_file: Path, entries: list[ProbeEntry], *, concurrency: int, max_tokens: int,
        progress: bool) -> int:
    if spec.endpoint is None:
        raise CliError(f"model {spec.name!r} has no endpoint in {yaml_file}: add an `endpoint` section (base_url, "
                       "model, api_key_env) to probe it")
    folder = yaml_file.parent / "probes"
    stem = file_stem(spec.name)
    responses, results = folder / f"{stem}.responses.jsonl", folder / f"{stem}.csv"
    done, failures = asyncio.run(collect(spec, entries, responses, concurrency=concurrency,
                                         max_tokens=max_tokens, progress=progress))
    count, accuracy = grade(entries, done, results)
    answered = sum(e.prompt_id in done for e in entries)
    print(f"{answered} of {len(entries)} probe prompts answered ({len(failures)} failed this run); graded {count} "
          f"(accuracy {accuracy:.3f}) into {results}; answers in {responses}", file=sys.stderr)
    for failure in failures[:5]:
        print(f"  failed: {failure}", file=sys.stderr)
    if failures:
        print("run the command again to retry the failed prompts (answers already in are kept)", file=sys.stderr)
    linked = spec.probe is not None and isinstance(spec.probe.results, str) \
        and (yaml_file.parent / spec.probe.results).resolve() == results.resolve()
    if count < MIN_PROBE_RESULTS:
        print(f"warning: a registry needs at least {MIN_PROBE_RESULTS} probe results; these are {count}",
              file=sys.stderr)
    elif not linked:
        print(f"to use them, set `probe: {{results: probes/{results.name}}}` in {spec.name}'s entry in {yaml_file}",
              file=sys.stderr)
    return 1 if failures and answered < len(entries) else 0
