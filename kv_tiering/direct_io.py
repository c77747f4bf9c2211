"""File I/O for block files: direct I/O (O_DIRECT) where the filesystem allows it.

Direct I/O keeps the tier's traffic out of the page cache (which would otherwise hold a
second copy of every block, counted against the pod's memory) and makes the tier's byte
limit the real footprint. It needs aligned buffers, lengths and offsets (layout.IO_ALIGN),
which the DRAM slots and headers provide; tmpfs and some overlay filesystems refuse it, and
then plain buffered I/O does the same job.

A file is written to a temporary name and renamed into place, so a writer killed mid-file
leaves a `<name>.<pid>.tmp` (removed at the next start), never a half-written block under a real name.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

from infleet.kv_tiering.layout import IO_ALIGN

_DIRECT = getattr(os, "O_DIRECT", 0)
Buffer = bytes | bytearray | memoryview | mmap.mmap


def aligned_buffer(nbytes: int) -> mmap.mmap:
    """Zeroed anonymous memory starting on a page boundary (usable for direct I/O)."""
    return mmap.mmap(-1, nbytes)


def probe_direct_io(directory: Path) -> bool:
    """Whether files in `directory` accept O_DIRECT writes from an aligned buffer."""
    if not _DIRECT:
        return False
    probe = directory / f".direct-io-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _DIRECT, 0o600)
    except OSError:
        return False
    try:
        return os.pwrite(fd, aligned_buffer(IO_ALIGN), 0) == IO_ALIGN
    except OSError:
        return False
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()


def write_file(path: Path, chunks: Sequence[Buffer], *, direct: bool) -> None:
    """Write `chunks` to `path` through a temporary name and a rename; 0600. Raises
    OSError (ENOSPC on a full disk) with nothing left behind."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (_DIRECT if direct else 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        expected = sum(memoryview(c).nbytes for c in chunks)
        written = os.pwritev(fd, list(chunks), 0)
        if written != expected:  # only a full disk or a file size limit cuts a file write
            raise OSError(errno.ENOSPC, f"short write ({written} of {expected} bytes)", str(tmp))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)


def read_file(path: Path, chunks: Sequence[Buffer], *, direct: bool) -> int:
    """Fill `chunks` from the start of `path`; returns the file's size (the caller checks
    it: a truncated file reads short). Raises OSError when the file cannot be read."""
    fd = os.open(path, os.O_RDONLY | (_DIRECT if direct else 0))
    try:
        size = os.fstat(fd).st_size
        os.preadv(fd, list(chunks), 0)
        return size
    finally:
        os.close(fd)
