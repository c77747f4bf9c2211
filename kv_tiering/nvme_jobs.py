"""The store's work off the engine thread: NVMe reads on the I/O pool, NVMe writes on the
write-through thread. Each job does its file I/O without the lock and takes it only to
change the tiers' indexes.
"""

from __future__ import annotations

import errno
import logging
import threading
import time

import torch

from infleet.kv_tiering.completion import TransferHandle, wait_for
from infleet.kv_tiering.dram_tier import DramEntry, DramTier
from infleet.kv_tiering.file_format import BadBlockFile
from infleet.kv_tiering.metrics import TierRecorder
from infleet.kv_tiering.nvme_tier import NvmeTier
from infleet.kv_tiering.transfer import BlockCopier

log = logging.getLogger("infleet.kv_tiering")


class NvmeJobs:
    def __init__(
        self,
        lock: threading.Lock,
        dram: DramTier,
        nvme: NvmeTier,
        copier: BlockCopier,
        record: TierRecorder,
    ) -> None:
        self.lock, self.dram, self.nvme, self.copier, self.record = lock, dram, nvme, copier, record

    def load(
        self,
        handle: TransferHandle,
        i: int,
        key: bytes,
        entry: DramEntry,
        block_id: int,
        after: torch.cuda.Event | None,
    ) -> bool:
        """Read a block's file into its DRAM slot (promoting it), then copy it to device
        block `block_id`. An unusable file is a miss: the entry and the file go."""
        try:
            self.nvme.read(key, self.dram.raw(entry.slot))
        except (BadBlockFile, OSError) as err:
            log.warning("KV tiers: NVMe block %s unusable, recomputing: %s", key.hex(), err)
            with self.lock:
                self.dram.remove(key)
                self.nvme.discard(key)
            self.nvme.delete(key)
            self.record.count("misses", "nvme")
            if isinstance(err, BadBlockFile):
                self.record.bad_file()
            return False
        self.record.count("hits", "nvme")
        self.record.count("read_bytes", "nvme", self.nvme.file_bytes)
        self.record.count("written_bytes", "dram", self.dram.layout.block_bytes)
        self._deliver(handle, i, entry, block_id, after)
        return True

    def copy_after_load(
        self,
        handle: TransferHandle,
        i: int,
        key: bytes,
        entry: DramEntry,
        block_id: int,
        after: torch.cuda.Event | None,
    ) -> None:
        """A DRAM hit whose slot another restore is still loading from NVMe."""
        assert entry.loading is not None
        if entry.loading.result():
            self.record.count("hits", "dram")
            self._deliver(handle, i, entry, block_id, after)

    def _deliver(self, handle, i: int, entry: DramEntry, block_id: int, after) -> None:
        """The slot holds the block: copy it to the device and wait (this thread only)."""
        event = self.copier.to_device([self.dram.view(entry.slot)], [block_id], after)
        if event is not None:
            event.event.synchronize()
        self.record.count("read_bytes", "dram", self.dram.layout.block_bytes)
        handle.ok[i] = True

    def write(self, item: tuple[bytes, DramEntry]) -> int:
        """Write one block file from its DRAM slot; returns the bytes written. A failed
        write leaves the block in DRAM only; a full disk also caps the tier at what it
        holds now, so later writes evict old files instead of failing."""
        key, entry = item
        if entry.filling is not None:
            wait_for(entry.filling.done, timeout=None)  # the spill copy into the slot
        start = time.perf_counter()
        with self.lock:
            victims = self.nvme.reserve()
        for path in victims:
            path.unlink(missing_ok=True)
        try:
            self.nvme.write(key, self.dram.raw(entry.slot))
        except OSError as err:
            with self.lock:
                self.nvme.release()
                entry.writing = False
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    self.nvme.shrink_to_used()
            self.record.count("dropped", "nvme")
            log.warning("KV tiers: NVMe write failed, block kept in DRAM only: %s", err)
            return 0
        with self.lock:
            self.nvme.commit(key)
            entry.on_nvme = True
            entry.writing = False
        self.record.count("written_bytes", "nvme", self.nvme.file_bytes)
        self.record.observe("spill_seconds", "nvme", time.perf_counter() - start)
        return self.nvme.file_bytes
