"""TieredBlockStore: the KV block store below the device pool (DRAM, then NVMe).

The engine's thread calls `lookup`, `spill`, `restore`, `swap_out`, `swap_in` and `poll`;
none of them waits for a copy or a file. Work runs elsewhere:

- device <-> DRAM copies: a side CUDA stream on GPU; one copy thread on CPU (one thread,
  so a restore queued after a spill of the same slot runs after it);
- NVMe reads: an I/O thread pool; each read lands in a DRAM slot (the block is promoted)
  and is copied on to the device from there;
- NVMe writes: the write-through thread (write_through.py).

One lock guards both tiers' indexes; no file I/O or copy runs under it. A slot is reused
only when every copy touching it is done and it is not queued for writing, loading or
held by a swapped-out sequence (DramEntry.evictable).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import torch

from infleet.kv_tiering.completion import HELD, TransferHandle, wait_for
from infleet.kv_tiering.config import Tier, TierConfig
from infleet.kv_tiering.dram_tier import DramEntry, DramTier
from infleet.kv_tiering.layout import BlockLayout
from infleet.kv_tiering.metrics import TierMetrics, TierRecorder
from infleet.kv_tiering.nvme_jobs import BlockTask, NvmeJobs
from infleet.kv_tiering.nvme_tier import NvmeTier
from infleet.kv_tiering.transfer import DramCopies
from infleet.kv_tiering.write_through import FlushReport

log = logging.getLogger("infleet.kv_tiering")


class TieredBlockStore:
    def __init__(
        self,
        kv_cache: torch.Tensor,
        config: TierConfig,
        *,
        fingerprint: bytes,
        metrics: TierMetrics | None = None,
    ) -> None:
        """`kv_cache` is the device pool `[2, layers, blocks, block_size, kv_heads,
        head_dim]`; `fingerprint` (fingerprint.py) names the model the blocks belong to."""
        if not config.enabled:
            raise ValueError("the tiered store needs --kv-dram-size > 0")
        self.layout = BlockLayout.of_pool(kv_cache)
        self.config = config
        self.record = TierRecorder(metrics)
        self.dram = DramTier(self.layout, config.dram_bytes, pin=kv_cache.device.type == "cuda")
        self.copies = DramCopies(kv_cache, self.dram, self.record)
        self.nvme = None
        if config.nvme_bytes:
            assert config.nvme_path is not None
            self.nvme = NvmeTier(
                config.nvme_path,
                config.nvme_bytes,
                self.layout,
                fingerprint,
                direct_io=config.direct_io,
            )
        self._lock = threading.Lock()
        self._jobs = None
        if self.nvme is not None:
            queue = config.write_queue_bytes // self.layout.slot_bytes
            self._jobs = NvmeJobs(
                self._lock, self.dram, self.nvme, self.copies.copier, self.record,
                io_threads=config.io_threads,
                write_queue=max(1, min(queue, self.dram.num_slots // 2)),
                write_bytes_per_s=config.write_bytes_per_s,
            )  # fmt: skip
        self._unfinished: list[TransferHandle] = []
        self._closed = False
        self._publish_usage()

    # --- what the engine calls ---

    def lookup(self, keys: Sequence[bytes]) -> list[Tier]:
        """Where each of the leading `keys` is held below the device, stopping at the first
        held nowhere. Changes nothing (no recency, no metrics)."""
        found: list[Tier] = []
        with self._lock:
            for key in keys:
                entry = self.dram.get(key)
                if entry is not None and not entry.pinned:
                    found.append(Tier.DRAM)
                elif self.nvme is not None and key in self.nvme:
                    found.append(Tier.NVME)
                else:
                    break
        return found

    def spill(self, keys: Sequence[bytes], block_ids: Sequence[int]) -> TransferHandle:
        """Copy device blocks (full, hashed: `keys[i]` is block_ids[i]'s chained hash) to
        DRAM and queue them for NVMe. The device blocks must not be overwritten until the
        handle is done (or `handle.fence()` on CUDA). A block that finds no idle DRAM slot
        is dropped (`ok[i]` false)."""
        self._check_open(keys, block_ids)
        handle = self._handle(len(keys), self.record.spilled)
        after = self.copies.mark()
        with self._lock:
            new: list[tuple[DramEntry, int]] = []
            new_keys: list[bytes] = []
            for i, (key, block_id) in enumerate(zip(keys, block_ids, strict=True)):
                if self.dram.get(key) is not None:
                    self.dram.touch(key)  # already below: nothing to copy
                    handle.ok[i] = True
                elif (entry := self.dram.insert(key)) is not None:
                    new.append((entry, block_id))
                    new_keys.append(key)
                    handle.ok[i] = True
            self.record.count("dropped", "dram", len(keys) - sum(handle.ok))
            if new:
                self.copies.from_device(new, after, handle)
                if self._jobs is not None:  # after `filling` is set: the writer waits for it
                    for key, (entry, _) in zip(new_keys, new, strict=True):
                        self._jobs.offer(key, entry)
            self._publish_usage()
        return handle

    def restore(self, keys: Sequence[bytes], block_ids: Sequence[int]) -> TransferHandle:
        """Copy the blocks named by `keys` into device blocks `block_ids` (allocated by the
        engine), from DRAM or NVMe; stops at the first key held nowhere. Once the handle is
        done, `handle.num_done` leading blocks have arrived (a bad file ends the run)."""
        self._check_open(keys, block_ids)
        handle = self._handle(len(keys), self.record.restored)
        after = self.copies.mark()
        with self._lock:
            # First find every block, holding the DRAM ones: staging an NVMe block below
            # must not evict a block this same restore is about to read.
            found: list[DramEntry | None] = []  # None: on NVMe only
            for key in keys:
                entry = self.dram.get(key)
                if entry is not None and not entry.pinned:
                    entry.busy.append(HELD)
                    self.dram.touch(key)
                    found.append(entry)
                elif self.nvme is not None and key in self.nvme:
                    found.append(None)
                else:
                    self.record.count("misses", "dram")
                    self.record.count("misses", "nvme", self.nvme is not None)
                    break
            from_dram: list[tuple[DramEntry, int]] = []
            for i, entry in enumerate(found):
                key, block_id = keys[i], block_ids[i]
                if entry is None:
                    self._load(BlockTask(handle, i, key, self.dram.insert(key), block_id, after))
                elif entry.loading is not None and not entry.loading.done():
                    assert self._jobs is not None  # only NVMe reads load slots
                    self._jobs.copy_after_load(BlockTask(handle, i, key, entry, block_id, after))
                else:
                    from_dram.append((entry, block_id))
                    handle.ok[i] = True
            self.record.count("hits", "dram", len(from_dram))
            if from_dram:
                self.copies.to_device(from_dram, after, handle)
            self._publish_usage()
        return handle

    def _load(self, task: BlockTask) -> None:
        """Under the lock: an NVMe block, staged in a new DRAM entry (it is promoted) or,
        when every slot is busy, in the I/O thread's own buffer."""
        assert self.nvme is not None and self._jobs is not None
        self.record.count("misses", "dram")
        self.nvme.touch(task.key)
        task.handle.tier = Tier.NVME.value
        loading = self._jobs.load(task)
        if task.entry is not None:
            task.entry.on_nvme = True
            task.entry.loading = loading

    def swap_room(self) -> int:
        """Blocks a swap-out could take now (free or idle DRAM slots)."""
        with self._lock:
            return self.dram.room()

    def swap_out(self, keys: Sequence[bytes], block_ids: Sequence[int]) -> TransferHandle | None:
        """Preemption by swap: copy a sequence's blocks (any blocks; `keys` unique to this
        sequence) to DRAM slots held until `swap_in`. None, with nothing done, when DRAM
        cannot hold them all (then preempt by recompute)."""
        self._check_open(keys, block_ids)
        handle = self._handle(len(keys), self.record.spilled)
        after = self.copies.mark()
        with self._lock:
            if self.dram.room() < len(keys):
                return None
            held = []
            for key, block_id in zip(keys, block_ids, strict=True):
                entry = self.dram.insert(key)
                assert entry is not None  # room() counted it
                entry.pinned = True
                held.append((entry, block_id))
            handle.ok[:] = [True] * len(keys)
            self.copies.from_device(held, after, handle)
            self._publish_usage()
        return handle

    def swap_in(self, keys: Sequence[bytes], block_ids: Sequence[int]) -> TransferHandle:
        """Copy a swapped-out sequence's blocks back; their slots become the first evicted."""
        self._check_open(keys, block_ids)
        handle = self._handle(len(keys), self.record.restored)
        after = self.copies.mark()
        with self._lock:
            held = []
            for key, block_id in zip(keys, block_ids, strict=True):
                entry = self.dram.get(key)
                if entry is None or not entry.pinned:
                    raise KeyError(f"block {key.hex()} was not swapped out")
                entry.pinned = False
                entry.busy.append(HELD)
                self.dram.make_oldest(key)
                held.append((entry, block_id))
            handle.ok[:] = [True] * len(keys)
            self.copies.to_device(held, after, handle)
        return handle

    def release_swap(self, keys: Sequence[bytes]) -> None:
        """A swapped-out sequence ended before its swap-in: its slots become the first
        evicted (a copy still running keeps its slot busy until it ends)."""
        with self._lock:
            for key in keys:
                entry = self.dram.get(key)
                if entry is not None and entry.pinned:
                    entry.pinned = False
                    self.dram.make_oldest(key)
            self._publish_usage()

    def poll(self) -> None:
        """Once per engine step: finish the bookkeeping of transfers nobody polled."""
        self._unfinished[:] = [h for h in self._unfinished if not h.done()]
        with self._lock:
            self._publish_usage()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every block queued for NVMe is written or dropped (benchmarks, tests,
        a planned drain); False if `timeout` passed first."""
        jobs = self._jobs
        return jobs is None or wait_for(lambda: jobs.pending_writes == 0, timeout)

    def close(self, grace_s: float) -> FlushReport:
        """Stop taking work; write what is queued for NVMe within `grace_s` (SIGTERM's
        grace period); finish in-flight copies. Idempotent."""
        report = FlushReport(0, 0, 0.0)
        if self._closed:
            return report
        self._closed = True
        if self._jobs is not None:
            report = self._jobs.close(grace_s)
        self.copies.shutdown()
        wait_for(lambda: all(h.done() for h in self._unfinished), timeout=5.0)
        self.dram.close()
        if report.abandoned:
            log.warning("KV tiers: %d blocks not on NVMe: grace period over", report.abandoned)
        return report

    def describe(self) -> str:
        """What each tier holds, for the start-up log."""
        d = self.dram
        text = (
            f"DRAM tier {_size(d.capacity_bytes)}: {d.num_slots} blocks of "
            f"{_size(self.layout.block_bytes)}{' (pinned)' if d.pinned_memory else ''}"
        )
        if self.nvme is not None:
            n = self.nvme
            text += (
                f"; NVMe tier {_size(n.capacity_bytes)} at {n.dir}: "
                f"{n.capacity_bytes // n.file_bytes} block files, "
                f"{'direct' if n.direct_io else 'buffered'} I/O, "
                f"{n.found_at_start} found from an earlier run"
            )
        return text

    # --- copies and jobs ---

    def _handle(self, n: int, on_done: Callable[[TransferHandle], None]) -> TransferHandle:
        handle = TransferHandle(n, on_done)
        self._unfinished.append(handle)
        return handle

    def _publish_usage(self) -> None:
        self.record.usage("dram", self.dram.used_bytes, self.dram.capacity_bytes)
        if self.nvme is not None:
            self.record.usage("nvme", self.nvme.used_bytes, self.nvme.capacity_bytes)

    def _check_open(self, keys: Sequence[bytes], block_ids: Sequence[int]) -> None:
        if self._closed:
            raise RuntimeError("the KV tier store is closed")
        if len(keys) != len(block_ids):
            raise ValueError(f"{len(keys)} keys for {len(block_ids)} device blocks")


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"
