"""Forwarding one chat request down a list of models until one answers (fallback).

The list comes from the routing decision (`selector.ranking`: the chosen model, then the others that
meet every constraint of the request, best first) or is one model the caller named; a model whose
server looks down (`cooldown`) moves to its end. Each model is
tried once, in order, at most `max_attempts` of them; the next is tried only when the previous one
failed before any byte of its answer was sent (connection error, timeout, 408, 429, 5xx, 401/403/404
about its endpoint, an answer that is no chat completion, a missing key). A client error from an
upstream (400, 409, 422, ...) ends the request: the same request would be refused by the next model
too. When every attempt fails, `AllAttemptsFailed` names them.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pickwise.api.errors import AllAttemptsFailed
from pickwise.api.gateway.cooldown import Cooldown
from pickwise.api.gateway.upstream import UpstreamClient, UpstreamError, UpstreamReply, UpstreamStream
from pickwise.registry import ModelSpec

log = logging.getLogger("pickwise.gateway")


@dataclass(frozen=True)
class Attempt:
    model: str
    outcome: str  # "ok", "client error 400", "status 503", "timeout", "connect", ...
    seconds: float
    retry_after: float | None = None  # seconds the upstream asked to wait (its Retry-After), if any
    retryable: bool = True  # whether the same call may succeed if made again (UpstreamError.retryable)


class Observer:
    """What the forwarder reports as it goes; the HTTP app's metrics implement it, the default ignores it."""

    def attempt(self, model: str, outcome: str, seconds: float) -> None: ...

    def fallback(self, model: str) -> None:
        """`model` failed and the next one is tried."""

    def usage(self, spec: ModelSpec, usage: dict) -> None:
        """The `usage` an answer from `spec`'s model reported (tokens, and so cost)."""

    def interrupted(self, model: str) -> None:
        """A stream from `model` failed after its first event had gone to the caller."""


@dataclass
class Forwarded:
    """The answer: from `spec`'s model, after `attempts` (the answering one last), as a reply or an open stream."""

    spec: ModelSpec
    attempts: list[Attempt]
    reply: UpstreamReply | None = None
    stream: UpstreamStream | None = None

    @property
    def model(self) -> str:
        return self.spec.name


def upstream_body(body: dict, spec: ModelSpec) -> bytes:
    """The caller's body as the upstream gets it: its own model name, pickwise's options removed,
    every other field unchanged."""
    forwarded = {k: v for k, v in body.items() if k != "pickwise"}
    forwarded["model"] = spec.upstream_model
    return json.dumps(forwarded, ensure_ascii=False, separators=(",", ":")).encode()


class Forwarder:
    def __init__(self, client: UpstreamClient | None, observer: Observer | None = None,
                 cooldown: Cooldown | None = None):
        """`client` may be set later (the HTTP app opens it when it starts serving)."""
        self.client = client
        self.observer = observer or Observer()
        self.cooldown = cooldown or Cooldown()

    async def forward(self, models: Sequence[ModelSpec], body: dict, *, stream: bool, max_attempts: int,
                      untried: int = 0) -> Forwarded:
        """The first answer down `models` (at most `max_attempts` tried); AllAttemptsFailed otherwise.
        `untried`: how many more models the ranking holds beyond `models` (for the error message)."""
        attempts: list[Attempt] = []
        tried = self.cooldown.order(models, lambda s: s.name)[:max_attempts]  # a server that looks down: last
        untried += len(models) - len(tried)
        for k, spec in enumerate(tried):
            started = time.perf_counter()
            try:
                if stream:
                    answer = await self.client.stream(spec, upstream_body(body, spec))
                else:
                    answer = await self.client.complete(spec, upstream_body(body, spec))
            except UpstreamError as exc:
                seconds = time.perf_counter() - started
                attempts.append(Attempt(spec.name, exc.outcome, seconds, exc.retry_after, exc.retryable))
                self.observer.attempt(spec.name, exc.outcome, seconds)
                self.cooldown.attempted(spec.name, exc.outcome)
                log.warning("upstream %s failed: %s", spec.name, exc)
                if k + 1 < len(tried):
                    self.observer.fallback(spec.name)
                continue
            if isinstance(answer, UpstreamStream):
                outcome, seconds = "ok", answer.first_byte_seconds
                done = Forwarded(spec, attempts, stream=answer)
            else:
                outcome = "ok" if answer.status < 400 else f"client error {answer.status}"
                seconds = answer.seconds
                done = Forwarded(spec, attempts, reply=answer)
                usage = answer.usage() if answer.status < 400 else None
                if usage:
                    self.observer.usage(spec, usage)
            attempts.append(Attempt(spec.name, outcome, seconds))
            self.observer.attempt(spec.name, outcome, seconds)
            self.cooldown.attempted(spec.name, outcome)
            return done
        raise AllAttemptsFailed(attempts, untried)
