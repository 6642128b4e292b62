"""Recent selections, so that feedback can name a decision instead of repeating its prompt.

Kept in the process's memory only: bounded by count, by total prompt characters and by age (the
oldest go first); a restart, or another replica, does not know them (docs/outcomes.md).
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

MAX_DECISIONS = 100_000
MAX_PROMPT_CHARS_KEPT = 64_000_000  # ~64 MB of prompt text at most, whatever the prompts' lengths
DECISION_TTL_S = 3600.0


@dataclass(frozen=True)
class RecordedDecision:
    prompt: str
    chosen: tuple[str, ...]  # registry names
    u: np.ndarray | None  # the prompt's vector, for feedback that keeps only the prompt's hash
    encoder: str | None  # the encoder that made u
    created: float


class DecisionLog:
    """A thread-safe LRU of decisions by id (uuid4 hex)."""

    def __init__(self, max_entries: int = MAX_DECISIONS, max_chars: int = MAX_PROMPT_CHARS_KEPT,
                 ttl_s: float = DECISION_TTL_S, clock=time.monotonic):
        self.max_entries, self.max_chars, self.ttl_s, self._clock = max_entries, max_chars, ttl_s, clock
        self._items: OrderedDict[str, RecordedDecision] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def record(self, prompt: str, chosen, u: np.ndarray | None = None, encoder: str | None = None) -> str:
        decision_id = uuid.uuid4().hex
        with self._lock:
            self._items[decision_id] = RecordedDecision(prompt, tuple(chosen), u, encoder, self._clock())
            self._chars += len(prompt)
            self._evict()
        return decision_id

    def get(self, decision_id: str) -> RecordedDecision | None:
        with self._lock:
            self._evict()
            return self._items.get(decision_id)

    def _evict(self) -> None:
        cutoff = self._clock() - self.ttl_s
        while self._items:
            oldest = next(iter(self._items.values()))
            if len(self._items) <= self.max_entries and self._chars <= self.max_chars and oldest.created >= cutoff:
                break
            _, gone = self._items.popitem(last=False)
            self._chars -= len(gone.prompt)
