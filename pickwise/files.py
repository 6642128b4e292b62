"""Writing a file so that a reader sees the old content or the new, never half of it."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A handle to a temporary sibling of `path` that replaces `path` when the block ends without error.

    The temporary file is a dotfile (a directory scan for `*.yaml` or `*.npz` never picks it up),
    is flushed to disk before the rename, and gets the mode of the file it replaces (0644 for a
    new one: mkstemp's 0600 would lock other accounts out). On any error it is removed and `path`
    is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    keep_mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, keep_mode)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
