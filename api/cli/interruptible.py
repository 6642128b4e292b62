"""Ctrl-C during a long solve: the solvers (HiGHS) run in C and see no KeyboardInterrupt until they
return, which is their time limit or later. The work runs in a daemon thread instead, so the main
thread takes Ctrl-C at once and the command exits 130; the solver stops with the process."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_S = 0.1  # how often the main thread wakes to take a signal


def interruptible(work: Callable[[], T]) -> T:
    """`work()`'s result or exception, computed in a daemon thread the main thread waits for."""
    done: dict[str, object] = {}

    def run() -> None:
        try:
            done["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            done["error"] = exc

    worker = threading.Thread(target=run, name="pickwise-solve", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_S)
    if "error" in done:
        raise done["error"]  # type: ignore[misc]
    return done["result"]  # type: ignore[return-value]
