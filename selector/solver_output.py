"""Keep in-process solvers' printf chatter off stdout.

Some HiGHS builds printf debug lines (e.g. `HighsMipSolverData::...`) straight to fd 1 during
MIP solves, whatever the log options say. `pickwise plan`, `universe` and `select` write JSON
to stdout, so that chatter would corrupt their output; the server's stdout would collect it
too. Every in-process HiGHS call in the selector runs inside `solver_stdout_to_stderr()`, so
every caller (CLI, API, benchmarks) is covered without guarding anything itself.

fd 1 belongs to the whole process, so the redirect is reference-counted under a lock: the
first of overlapping solves (API worker threads) redirects, the last one restores. While any
solve runs, other threads' writes to fd 1 land on stderr too; Python's sys.stdout buffer is
flushed before the redirect so text printed earlier still goes to stdout.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_saved_stdout: int | None = None
_libc = None


def _flush_c_stdio() -> None:
    """Flush C stdio buffers, so chatter buffered inside the solver lands on stderr, not later on stdout."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None)
        _libc.fflush(None)
    except (OSError, AttributeError):
        pass


@contextmanager
def solver_stdout_to_stderr() -> Iterator[None]:
    """Point fd 1 at stderr for the duration (no-op when either descriptor is unusable)."""
    global _depth, _saved_stdout
    with _lock:
        if _depth == 0:
            stdout = sys.stdout
            if stdout is not None:
                try:
                    stdout.flush()
                except (OSError, ValueError):
                    pass
            try:
                saved = os.dup(1)
            except OSError:
                saved = None
            if saved is not None:
                try:
                    os.dup2(2, 1)
                except OSError:
                    os.close(saved)
                    saved = None
            _saved_stdout = saved
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved_stdout is not None:
                _flush_c_stdio()
                os.dup2(_saved_stdout, 1)
                os.close(_saved_stdout)
                _saved_stdout = None


@contextmanager
def solver_stdout_discarded() -> Iterator[None]:
    """Send fd 1 to /dev/null for a short call that only prints a banner (HiGHS prints its own when
    an instance is made, before any option can silence it); fd 1 is restored after it."""
    with _lock:
        _flush_c_stdio()
        try:
            saved = os.dup(1)
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            saved = None
        if saved is not None:
            os.dup2(null, 1)
            os.close(null)
        try:
            yield
        finally:
            if saved is not None:
                _flush_c_stdio()
                os.dup2(saved, 1)
                os.close(saved)
