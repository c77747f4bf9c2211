"""The store's NVMe work, off the engine thread: reads on the I/O pool, writes on the
write-through thread. Each job does its file I/O without the lock and takes it only to
change the tiers' indexes.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from infleet.kv_tiering.completion import FutureDone, TransferHandle, wait_for
from infleet.kv_tiering.direct_io import aligned_buffer
from infleet.kv_tiering.dram_tier import DramEntry, DramTier
from infleet.kv_tiering.file_format import BadBlockFile
from infleet.kv_tiering.metrics import TierRecorder
from infleet.kv_tiering.nvme_tier import NvmeTier
from infleet.kv_tiering.transfer import BlockCopier, replace_held
from infleet.kv_tiering.write_through import FlushReport, WriteThrough

log = logging.getLogger("infleet.kv_tiering")


@dataclass(frozen=True, slots=True)
class BlockTask:
    """Block `index` of a restore: `key`'s bytes, staged in `entry`'s slot, go to device
    block `block_id` after the device work marked by `after`."""

    handle: TransferHandle
    index: int
    key: bytes
    entry: DramEntry | None  # None: no idle DRAM slot, staged in the I/O thread's buffer
    block_id: int
    after: torch.cuda.Event | None


class NvmeJobs:
    def __init__(
        self,
        lock: threading.Lock,
        dram: DramTier,
        nvme: NvmeTier,
        copier: BlockCopier,
        record: TierRecorder,
        *,
        io_threads: int,
        write_queue: int,
        write_bytes_per_s: float,
    ) -> None:
        self.lock, self.dram, self.nvme, self.copier, self.record = lock, dram, nvme, copier, record
        self._io = ThreadPoolExecutor(io_threads, "kv-io")
        self._local = threading.local()
        self._writer = WriteThrough(
            self.write, max_queue=write_queue, bytes_per_s=write_bytes_per_s
        )

    @property
    def pending_writes(self) -> int:
        return self._writer.pending

    def load(self, task: BlockTask) -> Future:
        """Under the store's lock: read `task.key`'s file into its entry's (new) slot and
        copy it to the device, on an I/O thread. The future says whether the file was good."""
        return self._submit(self._load, task)

    def copy_after_load(self, task: BlockTask) -> None:
        """Under the store's lock: a DRAM hit whose slot another restore is still loading."""
        self._submit(self._copy_after_load, task)

    def _submit(self, job, task: BlockTask) -> Future:
        future = self._io.submit(job, task)
        part = FutureDone(future)
        task.handle.parts.append(part)
        if task.entry is not None:
            replace_held(task.entry, part)  # the slot stays in use until the job ends
        return future

    def offer(self, key: bytes, entry: DramEntry) -> None:
        """Under the store's lock: queue a block that just reached DRAM for writing, unless
        it is on NVMe already; a full queue drops it (it stays in DRAM only)."""
        if key in self.nvme:
            entry.on_nvme = True
            return
        entry.writing = True
        if not self._writer.offer((key, entry)):
            entry.writing = False
            self.record.count("dropped", "nvme")

    def close(self, grace_s: float) -> FlushReport:
        """Flush the write queue within the grace period, then let running reads finish."""
        report = self._writer.close(grace_s)
        self._io.shutdown(wait=True)
        return report

    def _load(self, t: BlockTask) -> bool:
        staging = self._staging() if t.entry is None else None
        try:
            self.nvme.read(t.key, self.dram.raw(t.entry.slot) if t.entry else staging)
        except (BadBlockFile, OSError) as err:  # a miss: the entry and the file go
            log.warning("KV tiers: NVMe block %s unusable, recomputing: %s", t.key.hex(), err)
            with self.lock:
                if t.entry is not None:
                    self.dram.remove(t.key)
                self.nvme.discard(t.key)
            self.nvme.delete(t.key)
            self.record.count("misses", "nvme")
            if isinstance(err, BadBlockFile):
                self.record.bad_file()
            return False
        self.record.count("hits", "nvme")
        self.record.count("read_bytes", "nvme", self.nvme.file_bytes)
        if staging is not None:
            self._deliver(t, self._typed(staging))
            return True
        self.record.count("written_bytes", "dram", self.dram.layout.block_bytes)
        self._deliver(t)
        return True

    def _staging(self) -> memoryview:
        """This thread's aligned buffer of one slot, for a block that found no DRAM slot."""
        buf = getattr(self._local, "staging", None)
        if buf is None:
            buf = self._local.staging = aligned_buffer(self.dram.layout.slot_bytes)
        return memoryview(buf)

    def _typed(self, staging: memoryview) -> torch.Tensor:
        layout = self.dram.layout
        raw = torch.frombuffer(staging, dtype=torch.uint8)[: layout.block_bytes]
        return raw.view(layout.dtype).view(layout.shape)

    def _copy_after_load(self, t: BlockTask) -> None:
        assert t.entry is not None and t.entry.loading is not None
        if t.entry.loading.result():
            self.record.count("hits", "dram")
            self._deliver(t)

    def _deliver(self, t: BlockTask, staged: torch.Tensor | None = None) -> None:
        """The block is in its slot (or `staged`): copy it to the device and wait (this
        thread only)."""
        if staged is None:
            assert t.entry is not None
            staged = self.dram.view(t.entry.slot)
            self.record.count("read_bytes", "dram", self.dram.layout.block_bytes)
        event = self.copier.to_device([staged], [t.block_id], t.after)
        if event is not None:
            event.event.synchronize()
        t.handle.ok[t.index] = True

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
