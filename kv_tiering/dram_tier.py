"""The DRAM tier: a fixed slab of host memory cut into block slots, indexed by block key,
least recently used evicted first.

The slab is allocated once at its full size (anonymous mmap: page-aligned, so files can be
read straight into a slot with direct I/O; untouched pages cost nothing on CPU) and, on
CUDA, registered with the driver (pinned) so host<->device copies run asynchronously at
full speed. Registering an mmap, unlike torch's pinned allocator, keeps the exact size
(that allocator rounds up to a power of two) and the page alignment.

Not thread-safe: the store calls it under its lock.
"""

from __future__ import annotations

import mmap
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from infleet.kv_tiering.completion import HELD, Completion, all_done
from infleet.kv_tiering.direct_io import aligned_buffer
from infleet.kv_tiering.layout import BlockLayout


@dataclass(slots=True, eq=False)
class DramEntry:
    slot: int
    # Copies that read or write the slot; the slot is not reused until they are done.
    busy: list[Completion] = field(default_factory=list)
    # The spill copy filling the slot from the device (the NVMe writer waits for it).
    filling: Completion | None = None
    # An NVMe read filling the slot (result: whether the file was good).
    loading: Future | None = None
    on_nvme: bool = False  # a good copy exists on the NVMe tier
    writing: bool = False  # queued for, or being written to, the NVMe tier
    pinned: bool = False  # a swapped-out sequence's block: kept until swapped back in

    def evictable(self) -> bool:
        loading = self.loading is not None and not self.loading.done()
        return not (self.pinned or self.writing or loading) and all_done(self.busy)


class DramTier:
    def __init__(self, layout: BlockLayout, capacity_bytes: int, *, pin: bool) -> None:
        self.layout = layout
        self.num_slots = capacity_bytes // layout.slot_bytes
        if self.num_slots < 1:
            raise ValueError(
                f"--kv-dram-size {capacity_bytes} bytes holds no KV block "
                f"({layout.slot_bytes} bytes each)"
            )
        self.capacity_bytes = self.num_slots * layout.slot_bytes
        self._mmap: mmap.mmap | None = aligned_buffer(self.capacity_bytes)
        flat = torch.frombuffer(self._mmap, dtype=torch.uint8)
        self.slab = flat.view(self.num_slots, layout.slot_bytes)
        self.pinned_memory = False
        if pin:
            rc = torch.cuda.cudart().cudaHostRegister(flat.data_ptr(), self.capacity_bytes, 0)
            if int(rc) != 0:
                raise RuntimeError(f"cudaHostRegister of the DRAM tier failed (error {rc})")
            self.pinned_memory = True
        self.entries: OrderedDict[bytes, DramEntry] = OrderedDict()  # oldest first
        self._free = list(range(self.num_slots - 1, -1, -1))

    @property
    def used_bytes(self) -> int:
        return len(self.entries) * self.layout.slot_bytes

    def view(self, slot: int) -> torch.Tensor:
        """The slot as one block-first unit of the pool's dtype."""
        raw = self.slab[slot, : self.layout.block_bytes]
        return raw.view(self.layout.dtype).view(self.layout.shape)

    def raw(self, slot: int) -> memoryview:
        """The whole slot (block plus zero padding) as bytes, for file I/O."""
        return memoryview(self.slab[slot].numpy())

    def get(self, key: bytes) -> DramEntry | None:
        return self.entries.get(key)

    def touch(self, key: bytes) -> None:
        self.entries.move_to_end(key)

    def insert(self, key: bytes) -> DramEntry | None:
        """A new most-recent entry with a slot (evicting the least recently used idle entry
        if none is free), or None when every slot is busy. It is born held (busy with
        HELD) so that the same call cannot evict it before its copy is submitted."""
        assert key not in self.entries
        if not self._free and not self._evict_one():
            return None
        entry = DramEntry(self._free.pop(), busy=[HELD])
        self.entries[key] = entry
        return entry

    def remove(self, key: bytes) -> None:
        """Drop an entry whose slot no transfer uses any more."""
        entry = self.entries.pop(key)
        self._free.append(entry.slot)

    def make_oldest(self, key: bytes) -> None:
        self.entries.move_to_end(key, last=False)

    def room(self) -> int:
        """Slots free or held by idle, evictable entries."""
        return len(self._free) + sum(e.evictable() for e in self.entries.values())

    def _evict_one(self) -> bool:
        for key, entry in self.entries.items():
            if entry.evictable():
                self.remove(key)
                return True
        return False

    def close(self) -> None:
        if self.pinned_memory:
            torch.cuda.cudart().cudaHostUnregister(self.slab.data_ptr())
            self.pinned_memory = False
