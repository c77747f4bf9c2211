"""The engine's side of the KV tiers (kv_tiering/, docs/kv_tiering.md).

The block manager evicts a hashed block -> it is spilled to DRAM (and written through to
NVMe) before the device overwrites it: the next device step fences on the spill. A
waiting request whose prefix misses the device pool but is held below is admitted with
device blocks for that prefix and waits in RESTORING while the copies run (threads on
CPU, a side stream on CUDA); the scheduler asks each step which restores are done and
runs those sequences from the first block not restored. Nothing here blocks the step.

Preemption by swap: when moving a victim's blocks to DRAM and back costs less time than
recomputing its tokens (kv_tiering/cost.py, with rates measured here), the scheduler's
victim is swapped out instead of dropped; it waits in the queue, is given fresh blocks at
admission, swaps in (RESTORING) and resumes with nothing recomputed. Swaps are counted in
`kv_tier_swaps_total`, apart from `num_preemptions_total` (a request that lost its KV).

Order matters on the device blocks: a spill or swap-out reads a block that this same step
may hand to a restore, so `flush` issues them before its restores (on CPU an NVMe restore
copies from an I/O thread, not the copy thread, so it waits for them). A swap-out also
reads what the step in flight is still writing, and a restore may write a block that
step still writes (freed by a preempted victim, or the last block of a sequence that just
finished and still has a wasted row in flight), so the engine lets the step in flight
finish before a flush that issues either (`must_follow_step`): a host wait on the steps
that start a restore or a swap, not on the others.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal

from infleet.engine.core.block_manager import Block, BlockManager
from infleet.engine.core.sequence import Sequence, SequenceStatus
from infleet.kv_tiering import (
    FlushReport,
    PreemptionCosts,
    TieredBlockStore,
    TransferHandle,
    choose_preemption,
)

log = logging.getLogger("infleet.engine")


# Starting rates for the swap-or-recompute choice, replaced by measurements as they come.
PREFILL_TOKENS_PER_S = 2000.0
SWAP_BYTES_PER_S = 2e9
_EMA = 0.2


@dataclass(slots=True)
class Restore:
    keys: list[bytes]
    handle: TransferHandle | None = None  # None until flush() issues it
    swap: SwapOut | None = None  # a swap-in


@dataclass(slots=True)
class SwapOut:
    keys: list[bytes]  # unique to this sequence and preemption
    block_ids: list[int]
    num_computed_tokens: int
    handle: TransferHandle | None = None  # None until flush() issues it


class KvTiers:
    def __init__(self, store: TieredBlockStore, block_manager: BlockManager) -> None:
        self.store = store
        self.bm = block_manager
        self.cuda = store.copies.copier.cuda
        self.restoring: dict[Sequence, Restore] = {}
        self._spill_keys: list[bytes] = []
        self._spill_ids: list[int] = []
        self._fences: list[TransferHandle] = []  # spills the next device step waits for
        self._orphans: list[tuple[TransferHandle, Sequence]] = []  # aborted while restoring
        self.restored_tokens = 0
        # Swap preemption: "auto" chooses by cost; tests and benchmarks may pin it.
        self.preemption: Literal["auto", "swap", "recompute"] = "auto"
        self.swapped: dict[Sequence, SwapOut] = {}  # swapped out, waiting to come back
        self.num_swaps = 0
        self.fallbacks = 0  # swaps chosen that found no room after all: recomputed
        self.prefill_tokens_per_s = PREFILL_TOKENS_PER_S
        self.swap_bytes_per_s = SWAP_BYTES_PER_S
        self._timed: list[tuple[TransferHandle, int]] = []  # copies that measure the bus
        block_manager.on_spill = self._evicted

    @property
    def num_restoring(self) -> int:
        return len(self.restoring)

    def _evicted(self, key: bytes, block_id: int) -> None:
        self._spill_keys.append(key)
        self._spill_ids.append(block_id)

    # --- the scheduler's calls ---

    def lookup(self, seq: Sequence, hits: list[Block]) -> list[bytes]:
        """The keys of seq's blocks after its device hits that a restore can bring back."""
        parent = hits[-1].hash if hits else b""
        assert parent is not None
        keys = self.bm.prefix_hashes(seq, len(hits), parent)
        return keys[: len(self.store.lookup(keys))] if keys else []

    def begin(self, seq: Sequence, keys: list[bytes]) -> None:
        """seq was just admitted with device blocks for `keys` after its cached ones, or
        (swapped out) with fresh blocks for its swap-in."""
        seq.status = SequenceStatus.RESTORING
        swap = self.swapped.pop(seq, None)
        self.restoring[seq] = Restore(keys if swap is None else swap.keys, swap=swap)

    def swapped_blocks(self, seq: Sequence) -> int:
        """Blocks a swapped-out seq needs to come back (0: not swapped out)."""
        swap = self.swapped.get(seq)
        return 0 if swap is None else len(swap.keys)

    def swap_out(self, seq: Sequence) -> bool:
        """The scheduler preempts seq (before freeing its blocks): True if its KV goes to
        DRAM (issued at flush), False to recompute it."""
        n = len(seq.block_table)
        choice = self.preemption
        if choice == "auto":
            pending = sum(len(s.keys) for s in self.swapped.values() if s.handle is None)
            choice = choose_preemption(
                num_computed_tokens=seq.num_computed_tokens,
                num_blocks=n,
                bytes_per_block=self.store.layout.block_bytes,
                dram_room_blocks=self.store.swap_room() - pending,
                costs=PreemptionCosts(self.prefill_tokens_per_s, self.swap_bytes_per_s),
            )
        if choice != "swap" or n == 0 or seq.num_computed_tokens == 0:
            return False
        tag = f"{seq.request_id}/{seq.index}/{seq.num_preemptions}/{seq.arrival_index}"
        keys = [hashlib.blake2b(f"{tag}/{i}".encode(), digest_size=16).digest() for i in range(n)]
        self.swapped[seq] = SwapOut(keys, list(seq.block_table), seq.num_computed_tokens)
        return True

    @property
    def must_follow_step(self) -> bool:
        """Whether flush() will issue copies that the step in flight could race: a
        swap-out reads blocks it is still writing; a restore or swap-in writes blocks
        just freed by sequences it still writes (a preempted victim's tail, a finished
        sequence's last wasted row)."""
        return any(s.handle is None for s in self.swapped.values()) or any(
            r.handle is None for r in self.restoring.values()
        )

    def finished(self) -> list[Sequence]:
        """Sequences whose restore is done, now holding the blocks that arrived; the rest
        of their blocks stay allocated and are computed (a bad file ends a restore)."""
        done = []
        for seq, r in list(self.restoring.items()):
            if r.handle is None or not r.handle.done():
                continue
            del self.restoring[seq]
            if r.swap is not None:  # everything it had computed is back
                seq.num_computed_tokens = r.swap.num_computed_tokens
                self.bm.cache_full_blocks(seq)
                done.append(seq)
                continue
            arrived = r.keys[: r.handle.num_done]
            self.bm.cache_restored(seq, arrived)
            self.restored_tokens += len(arrived) * self.bm.block_size
            done.append(seq)
        return done

    def abandon(self, seq: Sequence) -> bool:
        """seq ends: True if its blocks must wait for copies in flight (poll frees them),
        False if the caller may free them now. A swapped-out seq's DRAM slots go."""
        swap = self.swapped.pop(seq, None)
        if swap is not None and swap.handle is not None:
            self.store.release_swap(swap.keys)
        r = self.restoring.pop(seq, None)
        if r is not None and r.swap is not None:
            self.store.release_swap(r.swap.keys)
        if r is None or r.handle is None:
            return False
        self._orphans.append((r.handle, seq))
        return True

    # --- the engine core's calls ---

    def flush(self) -> None:
        """Issue this step's swap-outs and spills, then its restores and swap-ins."""
        reads: list[TransferHandle] = []  # copies out of device blocks issued now
        for seq, swap in list(self.swapped.items()):
            if swap.handle is None:
                handle = self.store.swap_out(swap.keys, swap.block_ids)
                if handle is None:  # DRAM filled up since the choice: recompute after all
                    del self.swapped[seq]
                    self.fallbacks += 1
                    continue
                swap.handle = handle
                self.num_swaps += 1
                if self.store.record.metrics is not None:
                    self.store.record.metrics.swaps.inc()
                reads.append(handle)
                self._timed.append((handle, len(swap.keys) * self.store.layout.block_bytes))
        if self._spill_keys:
            reads.append(self.store.spill(self._spill_keys, self._spill_ids))
            self._spill_keys, self._spill_ids = [], []
        self._fences += reads
        for seq, r in self.restoring.items():
            if r.handle is not None:
                continue
            if reads and not self.cuda:
                for handle in reads:
                    handle.wait()
                reads = []
            if r.swap is not None:
                r.handle = self.store.swap_in(r.swap.keys, seq.block_table[: len(r.swap.keys)])
                continue
            start = len(seq.block_hashes)
            r.handle = self.store.restore(r.keys, seq.block_table[start : start + len(r.keys)])

    def take_fences(self) -> list[TransferHandle]:
        """Spills the next device step must see finished before it writes any block."""
        fences, self._fences = self._fences, []
        return fences

    def poll(self) -> None:
        keep = []
        for handle, seq in self._orphans:
            if handle.done():
                self.bm.free_seq(seq)
            else:
                keep.append((handle, seq))
        self._orphans = keep
        timed = []
        for handle, nbytes in self._timed:
            if not handle.done():
                timed.append((handle, nbytes))
            elif handle.seconds:
                rate = nbytes / handle.seconds
                self.swap_bytes_per_s += _EMA * (rate - self.swap_bytes_per_s)
        self._timed = timed
        self.store.poll()

    def observe_prefill(self, tokens: int, seconds: float) -> None:
        """A step that computed `tokens` tokens in `seconds`: the recompute rate."""
        if tokens >= 16 and seconds > 0:
            rate = tokens / seconds
            self.prefill_tokens_per_s += _EMA * (rate - self.prefill_tokens_per_s)

    def wait(self, timeout: float) -> None:
        """Nothing else to run: wait a little for the oldest restore."""
        for r in self.restoring.values():
            if r.handle is not None:
                r.handle.wait(timeout)
                return

    def close(self, grace_s: float) -> FlushReport:
        report = self.store.close(grace_s)
        if report.written or report.abandoned:
            log.info(
                "KV tiers: %d blocks written to NVMe at shutdown, %d left unwritten",
                report.written, report.abandoned,
            )  # fmt: skip
        return report
