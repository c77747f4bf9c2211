"""The NVMe tier: one file per block under a local directory, least recently used evicted
first, indexed by block key and rebuilt from the directory at start (a warm restart finds
the blocks an earlier process wrote).

Layout: `<path>/<model fingerprint>/<first key byte>/<key>.kv`, directories 0700, files
0600. Another model's blocks live under another fingerprint and are never looked at
(several engines may share a node's volume; this tier only ever deletes its own files).

The index is bookkeeping the store changes under its lock; `read` and `write` do the file
I/O on whatever thread calls them, without the lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from infleet.kv_tiering.direct_io import aligned_buffer, probe_direct_io, read_file, write_file
from infleet.kv_tiering.file_format import (
    HEADER_BYTES,
    BadBlockFile,
    check_header,
    header_for,
    pack_header,
    parse_header,
    payload_checksum,
)
from infleet.kv_tiering.layout import BlockLayout

SUFFIX = ".kv"


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


class NvmeTier:
    def __init__(
        self,
        root: Path,
        capacity_bytes: int,
        layout: BlockLayout,
        fingerprint: bytes,
        *,
        direct_io: bool = True,
    ) -> None:
        self.layout = layout
        self.fingerprint = fingerprint
        self.file_bytes = HEADER_BYTES + layout.slot_bytes
        self.capacity_bytes = capacity_bytes // self.file_bytes * self.file_bytes
        if self.capacity_bytes < self.file_bytes:
            raise ValueError(
                f"--kv-nvme-size {capacity_bytes} bytes holds no KV block file "
                f"({self.file_bytes} bytes each)"
            )
        self.dir = Path(root) / fingerprint.hex()[:32]
        try:
            _private_dir(self.dir)
            for i in range(256):
                _private_dir(self.dir / f"{i:02x}")
        except OSError as err:
            raise ValueError(f"--kv-nvme-path {root}: {err}") from err
        self.direct_io = direct_io and probe_direct_io(self.dir)
        self.index: OrderedDict[bytes, None] = OrderedDict()  # oldest first
        self.reserved = 0  # files being written: counted before they exist, never after
        self._buffers = threading.local()
        self.found_at_start, stale = self._rebuild()
        for path in stale + self.make_room(0):
            _unlink(path)

    @property
    def used_bytes(self) -> int:
        return (len(self.index) + self.reserved) * self.file_bytes

    def path(self, key: bytes) -> Path:
        name = key.hex()
        return self.dir / name[:2] / (name + SUFFIX)

    def _rebuild(self) -> tuple[int, list[Path]]:
        """Index every complete block file, oldest use first; returns how many were found
        and the files to delete (a killed writer's .tmp, truncated or misnamed files)."""
        found: list[tuple[int, bytes]] = []
        stale: list[Path] = []
        for sub in self.dir.iterdir():
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                path = Path(entry.path)
                key = _key_of(entry.name)
                st = entry.stat()
                if key is None or self.path(key) != path or st.st_size != self.file_bytes:
                    stale.append(path)
                else:
                    found.append((st.st_mtime_ns, key))
        for _, key in sorted(found):
            self.index[key] = None
        return len(found), stale

    # --- bookkeeping (caller holds the store's lock) ---

    def __contains__(self, key: bytes) -> bool:
        return key in self.index

    def touch(self, key: bytes) -> None:
        self.index.move_to_end(key)

    def reserve(self) -> list[Path]:
        """Room for one file about to be written; returns the files to delete for it."""
        victims = self.make_room(1)
        self.reserved += 1
        return victims

    def commit(self, key: bytes) -> None:
        """The reserved file is written: index it as the most recently used."""
        self.reserved -= 1
        self.index[key] = None

    def release(self) -> None:
        """The reserved file was not written."""
        self.reserved -= 1

    def discard(self, key: bytes) -> None:
        self.index.pop(key, None)

    def make_room(self, num_files: int) -> list[Path]:
        """Take least recently used keys off the index until `num_files` more fit; returns
        their files, which the caller deletes outside the lock."""
        victims = []
        while self.index and self.used_bytes + num_files * self.file_bytes > self.capacity_bytes:
            key, _ = self.index.popitem(last=False)
            victims.append(self.path(key))
        return victims

    def shrink_to_used(self) -> None:
        """The disk filled before the tier did: what it holds now is all it can hold."""
        self.capacity_bytes = max(self.used_bytes, self.file_bytes)

    # --- file I/O (any thread, no lock) ---

    def _header_buffer(self):
        buf = getattr(self._buffers, "header", None)
        if buf is None:
            buf = self._buffers.header = aligned_buffer(HEADER_BYTES)
        return buf

    def write(self, key: bytes, slot: memoryview) -> None:
        """Write one block from its DRAM slot (block bytes plus zero padding)."""
        crc = payload_checksum(slot[: self.layout.block_bytes])
        header = self._header_buffer()
        header[:] = pack_header(header_for(self.fingerprint, self.layout, key, crc))
        write_file(self.path(key), [header, slot], direct=self.direct_io)

    def read(self, key: bytes, slot: memoryview) -> None:
        """Fill a DRAM slot from the block's file; BadBlockFile (or OSError) if unusable."""
        header = self._header_buffer()
        path = self.path(key)
        size = read_file(path, [header, slot], direct=self.direct_io)
        if size != self.file_bytes:
            raise BadBlockFile(f"{path}: {size} bytes, a block file has {self.file_bytes}")
        h = parse_header(header)
        check_header(h, self.fingerprint, self.layout, key)
        if payload_checksum(slot[: self.layout.block_bytes]) != h.payload_crc:
            raise BadBlockFile(f"{path}: payload checksum mismatch")
        with contextlib.suppress(OSError):
            os.utime(path)  # recency survives a restart (the index is rebuilt by mtime)

    def delete(self, key: bytes) -> None:
        _unlink(self.path(key))


def _key_of(name: str) -> bytes | None:
    if not name.endswith(SUFFIX):
        return None
    try:
        return bytes.fromhex(name.removesuffix(SUFFIX))
    except ValueError:
        return None


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
