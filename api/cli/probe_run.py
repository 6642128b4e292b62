"""`pickwise probe run`: send the probe set to a model's endpoint, grade the answers, write the results.

Calls go through the gateway's pooled upstream client (`pickwise.api.gateway`), at most
`--concurrency` at once. Each answer is appended to `probes/NAME.responses.jsonl` beside the
model's YAML file as soon as it arrives (with the endpoint model it was asked of), so an interrupted
run picks up where it stopped, and answers of another endpoint model are asked again; a call
that fails with 408/429/5xx or a transport error is retried with backoff, a client error (400,
401, ...) is counted and left for the next run, and once the key is refused (401/403) no more calls
go out. The answers `probe score` can grade (multiple-choice prompts with a reference letter) are
graded into `probes/NAME.csv` (`prompt_id,score,output_tokens`).

Each answer's length is the upstream's `usage.completion_tokens`, what the model is billed by. A
reply without it has no length: counting it here would need the tables' cl100k_base tokenizer,
which is not shipped, and a count in another tokenizer would be a different unit in the same
column. Answers that cannot be graded still give their length (a row with an empty score).

The results file is replaced whole (temp file + rename: a running service may be reading it), and
never by one lacking results it holds: the model's entry may read it, and a run whose answers file
is gone would otherwise swap its results for fewer and break the registry. Replies that suggest the
answers do not measure the model (another model answering, empty answers, accuracy below blind
guessing) are graded as they are, with a warning.
"""
from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from pickwise.api.cli.options import CliError
from pickwise.api.gateway import UpstreamClient, UpstreamError, upstream_body
from pickwise.api.gateway.upstream import DEFAULT_TIMEOUT_S
from pickwise.files import atomic_file
from pickwise.registry import ModelSpec
from pickwise.registry.probes.grading import grade_response
from pickwise.registry.probes.probe_set import ProbeEntry, load_probe_set
from pickwise.registry.probes.results import (
    MIN_PROBE_RESULTS,
    ResultsFormatError,
    parse_output_tokens,
    read_results_file,
    write_results,
)
from pickwise.registry.store import safe_file_stem

RETRIES = 3
BACKOFF_S = 1.0


@dataclass(frozen=True)
class Answer:
    """One probe answer: its text, its length in the upstream's tokens (None: the reply had no usable usage),
    the endpoint model it was asked of and the model the reply says answered (None: not known)."""

    text: str
    output_tokens: int | None = None
    served_by: str | None = None
    asked: str | None = None

    def record(self, prompt_id: str) -> dict:
        extra = {"output_tokens": self.output_tokens} if self.output_tokens is not None else {}
        who = {k: v for k, v in (("model", self.asked), ("served_by", self.served_by)) if v is not None}
        return {"prompt_id": prompt_id, "response": self.text, **extra, **who}


def read_done(path: Path, asked: str | None = None) -> tuple[dict[str, Answer], Counter]:
    """(prompt_id -> answer of a previous run, how many answers came from other endpoint models, by name).

    A line cut short by an interruption is ignored; a line without a valid output_tokens (a run before
    lengths were kept) is an answer of unknown length. An answer asked of another endpoint model than
    `asked` (the YAML's `endpoint.model` changed since) does not describe this one: it is asked again.
    Lines from runs before the model was recorded count as this model's."""
    done: dict[str, Answer] = {}
    others: Counter = Counter()
    if not path.is_file():
        return done, others
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not (isinstance(record, dict) and isinstance(record.get("prompt_id"), str)
                and isinstance(record.get("response"), str)):
            continue
        model = record.get("model")
        if asked is not None and isinstance(model, str) and model != asked:
            others[model] += 1
            continue
        try:
            tokens = parse_output_tokens(record.get("output_tokens"))
        except ValueError:
            tokens = None
        served_by = record.get("served_by") if isinstance(record.get("served_by"), str) else None
        done[record["prompt_id"]] = Answer(record["response"], tokens, served_by, model if isinstance(model, str)
                                           else None)
    return done, others


def _answer(body: bytes, max_tokens: int) -> Answer:
    try:
        reply = json.loads(body)
        content = reply["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UpstreamError("protocol", "the answer is not a chat completion", retryable=False) from None
    usage = reply.get("usage") if isinstance(reply, dict) else None
    try:
        tokens = parse_output_tokens(usage.get("completion_tokens")) if isinstance(usage, dict) else None
    except ValueError:  # a server's odd usage figure: the answer counts, its length is unknown
        tokens = None
    if tokens is not None and tokens > max_tokens:  # more than it was allowed to write: the figure is wrong
        tokens = None
    served_by = reply.get("model") if isinstance(reply.get("model"), str) else None
    return Answer(content if isinstance(content, str) else "", tokens, served_by)  # `asked` is set by _ask


async def _ask(client: UpstreamClient, spec: ModelSpec, entry: ProbeEntry, max_tokens: int) -> Answer:
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
        return replace(_answer(reply.body, max_tokens), asked=spec.upstream_model)
    raise AssertionError("unreachable")


async def collect(spec: ModelSpec, entries: list[ProbeEntry], responses: Path, *, concurrency: int,
                  max_tokens: int, progress: bool, client: UpstreamClient | None = None
                  ) -> tuple[dict[str, Answer], list[tuple[str, UpstreamError]]]:
    """Every entry's response (earlier runs' included) and the failures of this run."""
    from tqdm import tqdm

    done, others = read_done(responses, spec.upstream_model)
    if others:
        names = ", ".join(f"{name!r} ({n})" for name, n in others.most_common(3))
        print(f"{sum(others.values())} answers in {responses} were asked of another endpoint model ({names}), "
              f"not {spec.upstream_model!r}: asking again", file=sys.stderr)
    todo = [e for e in entries if e.prompt_id not in done]
    failures: list[tuple[str, UpstreamError]] = []
    own = client is None
    client = client or UpstreamClient(max_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), desc=f"probe {spec.name}", unit="prompt",
               disable=not progress, file=sys.stderr)
    responses.parent.mkdir(parents=True, exist_ok=True)
    with responses.open("a", encoding="utf-8") as out:
        refused: list[UpstreamError] = []  # a refused key fails every call alike: stop asking

        async def one(entry: ProbeEntry) -> None:
            async with gate:
                try:
                    if refused:
                        raise refused[0]
                    answer = await _ask(client, spec, entry, max_tokens)
                except UpstreamError as exc:
                    failures.append((entry.prompt_id, exc))
                    if exc.status in (401, 403) and not refused:
                        refused.append(exc)
                    return
                finally:
                    bar.update(1)
            done[entry.prompt_id] = answer
            out.write(json.dumps(answer.record(entry.prompt_id), ensure_ascii=False) + "\n")
            out.flush()  # each answer kept at once: a run stopped midway resumes from here

        try:
            await asyncio.gather(*(one(e) for e in todo))
        finally:
            bar.close()
            if own:
                await client.aclose()
    return done, failures


def graded_rows(entries: list[ProbeEntry], done: dict[str, Answer]) -> list[tuple[str, float | None, int | None]]:
    """A results row for every answer that is graded or has a length (a length-only row when it cannot be graded)."""
    rows = [(e.prompt_id, grade_response(e, a.text), a.output_tokens) for e in entries
            for a in [done.get(e.prompt_id)] if a is not None]
    return [r for r in rows if r[1] is not None or r[2] is not None]


def kept_results(results: Path, rows: list[tuple[str, float | None, int | None]]) -> str | None:
    """Why `results` must not be replaced by `rows` (None: it may be). The registry may already read that
    file: a run whose answers file lost rows (deleted, or a run against a failing endpoint after it was
    moved) must not swap 220 results for fewer and break the model's entry."""
    if not results.is_file():
        return None
    try:
        before = read_results_file(results)
    except ResultsFormatError as exc:
        return f"it is not a results file this command wrote ({exc.problems[0]})"
    scored = {pid for pid, score, _ in rows if score is not None}
    lost = {r.prompt_id for r in before} - {pid for pid, _, _ in rows}
    lost_scores = {r.prompt_id for r in before if r.score is not None} - scored - lost  # graded by hand
    if lost:
        return f"it holds results for {len(lost)} probe prompts this run has no answer to"
    if lost_scores:
        return f"it holds scores for {len(lost_scores)} probe prompts this run cannot grade (graded by hand?)"
    return None


def failure_hints(spec: ModelSpec, yaml_file: Path, errors: list[UpstreamError]) -> list[str]:
    """What to change when many calls failed the same way: the endpoint's settings in `yaml_file`."""
    endpoint, hints = spec.endpoint, []
    timeouts = sum(e.kind == "timeout" for e in errors)
    if timeouts:
        hints.append(f"{timeouts} calls timed out after {endpoint.timeout_s or DEFAULT_TIMEOUT_S:g} s, each tried "
                     f"{RETRIES + 1} time(s): for a slow model, raise `endpoint.timeout_s` of {spec.name!r} in {yaml_file}")
    if any(e.status in (401, 403) for e in errors):
        hints.append(f"the endpoint refused the key: check the environment variable "
                     f"{endpoint.api_key_env or '(none: set endpoint.api_key_env)'} of {spec.name!r} in {yaml_file}")
    if any(e.status == 404 for e in errors):
        hints.append(f"the endpoint answered 404: check `endpoint.base_url` ({endpoint.base_url}) and "
                     f"`endpoint.model` ({spec.upstream_model!r}) of {spec.name!r} in {yaml_file}")
    return hints


def doubts(spec: ModelSpec, done: dict[str, Answer], responses: Path) -> list[str]:
    """Signs that the answers do not measure the model asked for: another model answering (a proxy's
    fallback; a dated snapshot of the name, `gpt-4o-2024-08-06` for `gpt-4o`, is the same model), empty
    answers (a reasoning model spending max_tokens on thought, a broken server) and accuracy below blind
    guessing (answers the grader cannot read). Each is graded as the answers are; the user decides."""
    lines = []
    asked = spec.upstream_model
    others = Counter(a.served_by for a in done.values() if a.served_by and not a.served_by.startswith(asked))
    if others:
        names = ", ".join(f"{name!r} ({n})" for name, n in others.most_common(3))
        lines.append(f"{sum(others.values())} replies name another model than {asked!r}: {names}; the results "
                     f"describe the model that answered (check the endpoint of {spec.name!r})")
    empty = sum(not a.text.strip() for a in done.values())
    if empty:
        lines.append(f"{empty} of {len(done)} answers are empty (graded wrong); if the model spends its tokens "
                     f"thinking, raise --max-tokens; delete their lines from {responses} to ask again")
    graded = [(e, grade_response(e, a.text)) for e in load_probe_set()  # empty answers are said above
              for a in [done.get(e.prompt_id)] if a and a.text.strip()]
    graded = [(e, s) for e, s in graded if s is not None]
    if len(graded) >= MIN_PROBE_RESULTS:
        accuracy = sum(s for _, s in graded) / len(graded)
        chance = sum(1 / len(e.choices) for e, _ in graded) / len(graded)
        if accuracy < chance:
            lines.append(f"accuracy {accuracy:.3f} is below blind guessing ({chance:.3f}): check that the answers "
                         f"in {responses} name an option letter (`The answer is (C)`)")
    return lines


def run(spec: ModelSpec, yaml_file: Path, entries: list[ProbeEntry], *, concurrency: int, max_tokens: int,
        progress: bool) -> int:
    if spec.endpoint is None:
        raise CliError(f"model {spec.name!r} has no endpoint in {yaml_file}: add an `endpoint` section (base_url, "
                       "model, api_key_env) to probe it")
    if max_tokens > spec.max_output_tokens:  # its server would refuse every call with a 400, one by one
        raise CliError(f"--max-tokens {max_tokens:,} is more than model {spec.name!r} answers: its registry "
                       f"max_output_tokens is {spec.max_output_tokens:,}; pass --max-tokens "
                       f"{spec.max_output_tokens} or less")
    folder = yaml_file.parent / "probes"
    stem = safe_file_stem(spec.name)  # as the registry names a model's files
    responses, results = folder / f"{stem}.responses.jsonl", folder / f"{stem}.csv"
    try:
        done, failures = asyncio.run(collect(spec, entries, responses, concurrency=concurrency,
                                             max_tokens=max_tokens, progress=progress))
    except KeyboardInterrupt:  # Ctrl-C: say what is kept, as a stopped run is meant to be resumed
        print(f"\ninterrupted: {len(read_done(responses, spec.upstream_model)[0])} answers kept in {responses}; run the command again "
              f"to resume (the results in {results} are as they were)", file=sys.stderr)
        raise
    rows = graded_rows(load_probe_set(), done)  # every answer in, so a --gradable-only run keeps earlier lengths
    kept = kept_results(results, rows)
    if kept is None and rows:  # no answers: no file (a bare header would only fail the registry later)
        with atomic_file(results, "w") as out:  # a running service may be reading it: whole or not at all
            write_results(out, rows)
    scores = [score for _, score, _ in rows if score is not None]
    count, accuracy = len(scores), (sum(scores) / len(scores) if scores else 0.0)
    with_length = sum(tokens is not None for *_, tokens in rows)
    answered = sum(e.prompt_id in done for e in entries)
    print(f"{answered} of {len(entries)} probe prompts answered ({len(failures)} failed this run); graded {count} "
          f"(accuracy {accuracy:.3f}) " + (f"into {results}" if kept is None and rows else "(not written)")
          + f"; answers in {responses}", file=sys.stderr)
    print(f"answer lengths (the upstream's usage.completion_tokens) recorded for {with_length} of {answered} answers"
          + (f"; the other {answered - with_length} replies had no usage (or one over --max-tokens): their lengths are unknown"
             if with_length < answered else ""), file=sys.stderr)
    for prompt_id, exc in failures[:5]:
        print(f"  failed: {prompt_id}: {exc}", file=sys.stderr)
    for line in failure_hints(spec, yaml_file, [exc for _, exc in failures]):
        print(line, file=sys.stderr)
    if failures:
        print("run the command again to retry the failed prompts (answers already in are kept)", file=sys.stderr)
    for line in doubts(spec, done, responses):
        print(f"warning: {line}", file=sys.stderr)
    if kept is not None:
        print(f"error: {results} was not replaced: {kept}; move it away to write new results", file=sys.stderr)
        return 1
    linked = spec.probe is not None and isinstance(spec.probe.results, str) \
        and (yaml_file.parent / spec.probe.results).resolve() == results.resolve()
    if count < MIN_PROBE_RESULTS:
        print(f"warning: a registry needs at least {MIN_PROBE_RESULTS} probe results; these are {count}",
              file=sys.stderr)
    elif not linked:
        print(f"to use them, set `probe: {{results: probes/{results.name}}}` in {spec.name}'s entry in {yaml_file}",
              file=sys.stderr)
    return 1 if failures and answered < len(entries) else 0
