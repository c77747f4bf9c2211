"""Whole-block copies between the device pool and DRAM slots.

On CUDA the copies run on one side stream, ordered after the work queued on the engine's
stream when the transfer was asked for (`mark()`); the engine learns they finished from an
event, so its step never waits. Blocks are first gathered into (or scattered from) one
contiguous staging tensor `[n, 2, layers, block_size, kv_heads, head_dim]` by a single
kernel, so each host copy is one large block-first unit instead of 2 x layers small
strided pieces. One stream for every copy keeps them in order: a restore queued after a
spill of the same block reads what the spill wrote.

On CPU there is no stream: a copy is a strided memcpy done by the calling thread (the
store's copy thread or an I/O thread), one per block — gathering first would only add a
pass over the bytes. docs/kv_tiering.md has the measurements behind both choices.

THE CUDA PATH IS WRITTEN BUT HAS NOT RUN: no GPU was available while it was built (see
docs/kv_tiering.md, "Not verified").
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from infleet.kv_tiering.completion import HELD, Completion, EventDone, FutureDone, TransferHandle
from infleet.kv_tiering.dram_tier import DramEntry, DramTier
from infleet.kv_tiering.layout import BlockLayout
from infleet.kv_tiering.metrics import TierRecorder


class BlockCopier:
    def __init__(self, kv_cache: torch.Tensor) -> None:
        self.kv = kv_cache
        self.layout = BlockLayout.of_pool(kv_cache)
        self.cuda = kv_cache.device.type == "cuda"
        self.stream = torch.cuda.Stream(kv_cache.device) if self.cuda else None

    def mark(self) -> torch.cuda.Event | None:
        """Call on the engine's thread when asking for a transfer: the copies will follow
        the device work queued so far."""
        if not self.cuda:
            return None
        return torch.cuda.current_stream(self.kv.device).record_event()

    def from_device(
        self, block_ids: list[int], slots: list[torch.Tensor], after: torch.cuda.Event | None
    ) -> EventDone | None:
        """Device blocks -> DRAM slot views. CUDA: queued, returns the event; CPU: done."""
        if not self.cuda:
            for block_id, slot in zip(block_ids, slots, strict=True):
                slot.copy_(self.kv[:, :, block_id])
            return None
        with torch.cuda.stream(self.stream):
            if after is not None:
                self.stream.wait_event(after)
            staged = torch.stack([self.kv[:, :, b] for b in block_ids])
            for slot, unit in zip(slots, staged, strict=True):
                slot.copy_(unit, non_blocking=True)
            return self._record()

    def to_device(
        self, slots: list[torch.Tensor], block_ids: list[int], after: torch.cuda.Event | None
    ) -> EventDone | None:
        """DRAM slot views -> device blocks. CUDA: queued, returns the event; CPU: done."""
        if not self.cuda:
            for slot, block_id in zip(slots, block_ids, strict=True):
                self.kv[:, :, block_id].copy_(slot)
            return None
        device = self.kv.device
        with torch.cuda.stream(self.stream):
            if after is not None:
                self.stream.wait_event(after)
            staged = torch.empty(
                (len(slots), *self.layout.shape), dtype=self.kv.dtype, device=device
            )
            for unit, slot in zip(staged, slots, strict=True):
                unit.copy_(slot, non_blocking=True)
            index = (
                torch.tensor(block_ids, dtype=torch.long).pin_memory().to(device, non_blocking=True)
            )
            self.kv.index_copy_(2, index, staged.movedim(0, 2))
            return self._record()

    def _record(self) -> EventDone:
        event = torch.cuda.Event()
        event.record(self.stream)
        return EventDone(event)


class DramCopies:
    """Queues copies between device blocks and DRAM entries' slots for the store: on the
    side stream (CUDA) or the one copy thread (CPU, so copies of a slot run in the order
    they were asked for). Each entry is busy with its copy until the copy is done."""

    def __init__(self, kv_cache: torch.Tensor, dram: DramTier, record: TierRecorder) -> None:
        self.copier = BlockCopier(kv_cache)
        self.dram = dram
        self.record = record
        self._thread = None if self.copier.cuda else ThreadPoolExecutor(1, "kv-copy")

    def mark(self) -> torch.cuda.Event | None:
        return self.copier.mark()

    def _run(self, job: Callable[[], EventDone | None]) -> Completion:
        if self._thread is None:
            part = job()
            assert part is not None
            return part
        return FutureDone(self._thread.submit(job))

    def from_device(
        self, items: list[tuple[DramEntry, int]], after, handle: TransferHandle
    ) -> None:
        """Device blocks -> the entries' slots (a spill or a swap-out)."""
        ids = [block_id for _, block_id in items]
        views = [self.dram.view(entry.slot) for entry, _ in items]
        part = self._run(lambda: self.copier.from_device(ids, views, after))
        for entry, _ in items:
            replace_held(entry, part)
            entry.filling = part
        handle.parts.append(part)
        self.record.count("written_bytes", "dram", len(items) * self.dram.layout.block_bytes)

    def to_device(self, items: list[tuple[DramEntry, int]], after, handle: TransferHandle) -> None:
        """The entries' slots -> device blocks (a restore or a swap-in)."""
        views = [self.dram.view(entry.slot) for entry, _ in items]
        ids = [block_id for _, block_id in items]
        part = self._run(lambda: self.copier.to_device(views, ids, after))
        for entry, _ in items:
            replace_held(entry, part)
        handle.parts.append(part)
        self.record.count("read_bytes", "dram", len(items) * self.dram.layout.block_bytes)

    def shutdown(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)


def replace_held(entry: DramEntry, part: Completion) -> None:
    """The copy the entry was held for is submitted: it is now busy with that copy."""
    if HELD in entry.busy:
        entry.busy.remove(HELD)
    entry.busy.append(part)
