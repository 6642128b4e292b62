"""What a load of the registry read from disk, so a later look can tell whether the files changed since.

Each file's stamp is its stat taken *before* its bytes are read, plus a hash of the bytes read. A
change that lands during or after the read therefore shows later: as a different stat, or, when the
file's timestamps are too close to the read for the file system's clock to tell the two versions apart
(a write in the same clock tick keeps the size and times), by hashing the content again. A stat that
changed while the content did not (a `touch`) costs one read and no reload.
"""
from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Files whose timestamps are this close to the moment they were read are hashed again at each look:
# the coarsest timestamps allowed for are FAT's 2 s; Linux file systems tick once per scheduler tick.
RACY_NS = 2_000_000_000

StatKey = tuple[int, int, int, int, int]  # (device, inode, size, mtime_ns, ctime_ns)


def _key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _stat(path: Path) -> StatKey | None:
    try:
        return _key(os.stat(path))
    except OSError:
        return None


def read_file(path: Path) -> tuple[StatKey, bytes]:
    """The file's stat (taken on the open file before reading) and its bytes. OSError for anything that is
    not a readable regular file: a directory, a FIFO (opened without blocking), a dangling or looping link."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise OSError(0, f"it is {kind}", str(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return _key(st), b"".join(chunks)
    finally:
        os.close(fd)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileStamp:
    """One read of a file: its stat before the read (None: missing), a hash of the bytes (None: unreadable),
    and the wall-clock time just before the stat."""

    stat: StatKey | None
    digest: str | None
    taken_ns: int

    def racy(self) -> bool:
        """Whether a write in the same timestamp tick as the read could have left the stat unchanged."""
        return self.stat is not None and max(self.stat[3], self.stat[4]) >= self.taken_ns - RACY_NS


class DiskRecord:
    """The registry files one load listed, and a stamp of every file it read (YAML and probe results)."""

    def __init__(self) -> None:
        self.listed: frozenset[Path] = frozenset()
        self.stamps: dict[Path, FileStamp] = {}

    def read(self, path: Path) -> bytes:
        """The file's bytes, stamped; on OSError the failed read is stamped too, then the error raised."""
        taken = time.time_ns()
        try:
            key, data = read_file(path)
        except OSError:
            self.stamps[path] = FileStamp(_stat(path), None, taken)
            raise
        self.stamps[path] = FileStamp(key, digest(data), taken)
        return data

    def wrote(self, path: Path, data: bytes, taken_ns: int) -> None:
        """`path` now holds `data`, written by us after `taken_ns`: a change by anyone else after our write
        makes the stat differ or leaves the file racy, so it is still noticed."""
        self.listed = self.listed | {path}
        self.stamps[path] = FileStamp(_stat(path), digest(data), taken_ns)

    def removed(self, path: Path) -> None:
        self.listed = self.listed - {path}
        self.stamps.pop(path, None)

    def changed(self, listing: Iterable[Path]) -> bool:
        """Whether the files differ from what was read: another listing, or any file's content. Stamps of
        files whose content is unchanged are renewed (so a touched file is hashed once, not at every look)."""
        if frozenset(listing) != self.listed:
            return True
        for path, stamp in list(self.stamps.items()):
            taken = time.time_ns()
            now = _stat(path)
            if now == stamp.stat and not stamp.racy():
                continue
            try:
                now, data = read_file(path)
                seen = digest(data)
            except OSError:
                seen = None
            if seen != stamp.digest:
                return True
            self.stamps[path] = FileStamp(now, seen, taken)
        return False
