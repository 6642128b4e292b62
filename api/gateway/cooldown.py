"""Which models' servers look down: tried after the others for a while.

A model whose last attempt could not connect or timed out is likely to do so again, and each such
attempt costs the caller up to the endpoint's timeout (10 s to connect) before the next model is
tried. So for `seconds` after such a failure the forwarder tries it after every other model it may
try, not first; it is still tried when the others fail, and an answer from it ends its cooldown.
A fast refusal (a 5xx, a 429) costs little and says nothing of the next call: it cools nothing.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

COOLDOWN_S = 30.0
COOLING_OUTCOMES = frozenset({"connect", "timeout"})
T = TypeVar("T")


class Cooldown:
    def __init__(self, seconds: float = COOLDOWN_S, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._until: dict[str, float] = {}  # used from the app's event loop only: no lock

    def attempted(self, model: str, outcome: str) -> None:
        """Note an attempt's outcome: a cooling failure starts the model's cooldown, an answer ends it."""
        if outcome in COOLING_OUTCOMES:
            self._until[model] = self._clock() + self.seconds
        else:
            self._until.pop(model, None)

    def cooling(self, model: str) -> bool:
        until = self._until.get(model)
        if until is not None and until <= self._clock():
            del self._until[model]
            return False
        return until is not None

    def order(self, items: Sequence[T], name: Callable[[T], str]) -> list[T]:
        """`items` with the cooling ones moved to the end, each group in its given order."""
        cooling = [self.cooling(name(i)) for i in items]
        return [i for i, c in zip(items, cooling) if not c] + [i for i, c in zip(items, cooling) if c]
