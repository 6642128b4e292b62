"""Where CLI commands write their results: stdout for '-', else a file that appears only when complete.

`pickwise predict`, `plan` and `probe export|score` write JSONL/CSV a later step reads; writing
to a temporary sibling and renaming it at the end means an interrupted run never leaves a
half-written file that looks finished.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from pickwise.api.cli.options import CliError
from pickwise.files import atomic_file


def check_output_path(option: str, path: str | None, inputs: Iterable[tuple[str, str | None]] = ()) -> None:
    """Fail before the work, not after it: a CliError when `path` (not '-') is a directory, lies in a
    directory that does not exist or cannot be written (predict, plan and eval spend minutes before
    they write), or is one of the files `inputs` ((option, path) pairs) names: replacing the input with
    the output would lose the input."""
    if not path or path == "-":
        return
    if Path(path).is_dir():
        raise CliError(f"{option} {path}: is a directory; give a file name")
    for source_option, source in inputs:
        if source and source != "-" and _same_file(source, path):
            raise CliError(f"{option} {path}: is the {source_option} file; writing there would replace the "
                           "input, give another file name")
    parent = Path(path).resolve().parent
    if parent.exists() and not parent.is_dir():
        raise CliError(f"{option} {path}: {parent} is a file, not a directory")
    if not parent.is_dir():
        raise CliError(f"{option} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CliError(f"{option} {path}: directory {parent} is not writable")


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one existing file (a link or another spelling of it too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    """stdout for '-', else a UTF-8 text file written in full before it replaces `path`.

    A file that cannot be written is a CliError naming it; on any failure the partial
    temporary file is removed and `path` is left as it was. A link is written through, to its target.
    """
    if path == "-":
        yield sys.stdout
        return
    # through a symbolic link, not over it: replacing the link left its target stale and the link gone
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        with atomic_file(target, "w") as fh:
            yield fh
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
