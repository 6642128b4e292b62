"""A running service follows `pickwise artifact promote` and `rollback` without a restart.

When `serve` runs on the default artifact (no `--artifact`), the app loads what the promotion
pointer ($PICKWISE_HOME/artifact.json) names and then looks at the pointer once a second: one
`stat` on a thread of its own, the file read only when the stat changed (promote and rollback
replace the file, so every change shows). A thread rather than a look in the request path: loading
takes seconds and must run off the event loop anyway, and an idle server (and its /readyz) follows
the pointer without waiting for a request to notice. The artifact it names now loads on a
short-lived thread (as the first load does: a long-lived thread that has run torch would slow every
encoder call, see `PickwiseService.encode`), is warmed, and is swapped in with its model vectors in
one step; the previous predictor serves until then, and a request in flight finishes on the
predictor that encoded its prompt. An artifact that does not load leaves the previous one serving
and sets `error` (/readyz shows it as `artifact_error`) until the pointer changes again.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from pickwise.api.service import PickwiseService
from pickwise.predictor.artifact import ArtifactError
from pickwise.predictor.promotion import POINTER_FILE, serving_artifact_dir
from pickwise.registry import pickwise_home

log = logging.getLogger("pickwise.api")
_NOT_LOOKED = object()


class PromotionWatcher:
    """Keeps `service` on the artifact the promotion pointer under `home` names, loaded by `load(dir)`."""

    interval_s = 1.0  # how stale the serving artifact may be: at most one stat of the pointer per interval

    def __init__(self, service: PickwiseService, load: Callable[[Path], object], *, home: Path | None = None):
        self.service = service
        self._load = load
        self._home = Path(home) if home is not None else pickwise_home()
        self._pointer = self._home / POINTER_FILE
        self._seen: object = _NOT_LOOKED  # the pointer's stat when it was last read
        self._loading: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # why the artifact the pointer names does not serve

    def start(self) -> None:
        """Load the artifact the pointer names now (in the background), then follow the pointer."""
        self.look()
        self._thread = threading.Thread(target=self._run, name="pickwise-promotion-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.look()
            except Exception:  # a thread's exception would go nowhere: say it, keep looking
                log.exception("looking at the promotion pointer failed")

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self._pointer)
        except FileNotFoundError:
            return None  # nothing promoted: the shipped artifact
        return st.st_ino, st.st_mtime_ns, st.st_size

    def look(self) -> None:
        """One look at the pointer: when it names another artifact than the one serving, start loading it."""
        if self._loading is not None and self._loading.is_alive():
            return  # the pointer is looked at again once this load is done
        stat = self._stat()
        if stat == self._seen:
            return
        self._seen = stat
        serving = self.service.current_predictor
        try:
            target = serving_artifact_dir(self._home).resolve()
        except ArtifactError as exc:  # a hand-edited pointer that does not parse: the error names the file
            self.error = self._failed(str(exc), serving)
            return
        except OSError as exc:
            self.error = self._failed(f"{self._pointer} cannot be read ({type(exc).__name__}: {exc})", serving)
            return
        if serving is not None and Path(serving.directory).resolve() == target:
            self.error = None  # rewritten, or back to what serves (a rollback past a broken artifact)
            return
        if serving is not None:
            log.info("the promotion pointer names %s: loading it (predictor %s serves meanwhile)", target,
                     serving.version)
        self._loading = threading.Thread(target=self._swap, args=(target,), name="pickwise-load-predictor",
                                         daemon=True)
        self._loading.start()

    def _swap(self, target: Path) -> None:
        error = self.service.load_predictor(lambda: self._load(target))
        self.error = None if error is None else self._failed(f"{target} does not load ({error})",
                                                              self.service.current_predictor)

    def _failed(self, why: str, serving) -> str:
        """The error to show; with nothing serving it is the predictor's load error too (/readyz: 503)."""
        if serving is None:
            self.service.load_error = self.service.load_error or why
            return why
        why = f"{why}; predictor {serving.version} keeps serving"
        log.warning("promoted artifact not served: %s", why)
        return why
