"""Where CLI commands write their results: stdout for '-', else a file that appears only when complete.

`pickwise predict`, `plan` and `probe export|score` write JSONL/CSV a later step reads; writing
to a temporary sibling and renaming it at the end means an interrupted run never leaves a
half-written file that looks finished.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pickwise.api.cli.options import CliError
from pickwise.files import atomic_file


def check_output_path(option: str, path: str | None, source: str | None = None) -> None:
    """Fail before the work, not after it: a CliError when `path` (not '-') lies in a directory that
    does not exist or cannot be written (predict, plan and eval spend minutes before they write), or
    is the `source` file the command reads (its lines would replace the input, which would be lost)."""
    if not path or path == "-":
        return
    if source and source != "-" and Path(path).exists() and Path(source).exists() and os.path.samefile(path, source):
        raise CliError(f"{option} {path}: is the --input file; write the results to another file")
    if Path(path).is_dir():
        raise CliError(f"{option} {path}: is a directory; name a file in it")
    parent = Path(path).resolve().parent
    if parent.exists() and not parent.is_dir():
        raise CliError(f"{option} {path}: {parent} is a file, not a directory")
    if not parent.is_dir():
        raise CliError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CliError(f"{option} {path}: directory {parent} is not writable")


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    """stdout for '-', else a UTF-8 text file written in full before it replaces `path`.

    A file that cannot be written is a CliError naming it; on any failure the partial
    temporary file is removed and `path` is left as it was.
    """
    if path == "-":
        yield sys.stdout
        return
    try:
        with atomic_file(path, "w") as fh:
            yield fh
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
