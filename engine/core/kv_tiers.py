"""The engine's side of the KV tiers (kv_tiering/, docs/kv_tiering.md).

The block manager evicts a hashed block -> it is spilled to DRAM (and written through to
NVMe) before the device overwrites it: the next device step fences on the spill. A
waiting request whose prefix misses the device pool but is held below is admitted with
device blocks for that prefix and waits in RESTORING while the copies run (threads on
CPU, a side stream on CUDA); the scheduler asks each step which restores are done and
runs those sequences from the first block not restored. Nothing here blocks the step.

Order matters on the device blocks: a spill reads a block that this same step may hand
to a restore, so `flush` issues the step's spills before its restores (on CPU an NVMe
restore copies from an I/O thread, not the copy thread, so it waits for the spill).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from infleet.engine.args import EngineArgs
from infleet.engine.core.block_manager import Block, BlockManager
from infleet.engine.core.sequence import Sequence, SequenceStatus
from infleet.kv_tiering import (
    FlushReport,
    TierConfig,
    TieredBlockStore,
    TierMetrics,
    TransferHandle,
    model_fingerprint,
)

log = logging.getLogger("infleet.engine")


@dataclass(slots=True)
class Restore:
    keys: list[bytes]
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
        """seq was just admitted with device blocks for `keys` after its cached ones."""
        seq.status = SequenceStatus.RESTORING
        self.restoring[seq] = Restore(keys)

    def finished(self) -> list[Sequence]:
        """Sequences whose restore is done, now holding the blocks that arrived; the rest
        of their blocks stay allocated and are computed (a bad file ends a restore)."""
        done = []
        for seq, r in list(self.restoring.items()):
            if r.handle is None or not r.handle.done():
                continue
            del self.restoring[seq]
            arrived = r.keys[: r.handle.num_done]
            self.bm.cache_restored(seq, arrived)
            self.restored_tokens += len(arrived) * self.bm.block_size
            done.append(seq)
        return done

    def abandon(self, seq: Sequence) -> bool:
        """seq ends while restoring: True if its blocks must wait for copies in flight
        (poll frees them), False if the caller may free them now."""
        r = self.restoring.pop(seq, None)
        if r is None or r.handle is None:
            return False
        self._orphans.append((r.handle, seq))
        return True

    # --- the engine core's calls ---

    def flush(self) -> None:
        """Issue this step's spills, then its restores."""
        spill = None
        if self._spill_keys:
            spill = self.store.spill(self._spill_keys, self._spill_ids)
            self._spill_keys, self._spill_ids = [], []
            self._fences.append(spill)
        for seq, r in self.restoring.items():
            if r.handle is None:
                if spill is not None and not self.cuda:
                    spill.wait()
                    spill = None
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
        self.store.poll()

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


class TierRegistry:
    """The tiers' metrics live in the core (its threads record them); the API side's
    /metrics appends this registry's text, which travels in CoreStats."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        self.metrics = TierMetrics(self.registry, model_name)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def weight_files(model_path: Path) -> list[Path]:
    if model_path.is_file():
        return [model_path]
    return sorted([*model_path.glob("*.safetensors"), *model_path.glob("*.gguf")])


def build_kv_tiers(
    args: EngineArgs, loaded, kv_cache, block_manager: BlockManager, model_path: Path,
    registry: TierRegistry,
) -> KvTiers:  # fmt: skip
    """The store for --kv-dram-size/--kv-nvme-size/--kv-nvme-path; ValueError names the flag."""
    if not args.enable_prefix_caching:
        raise ValueError("--kv-dram-size needs prefix caching (blocks are found by their hash)")
    config = TierConfig(
        dram_bytes=args.kv_dram_size,
        nvme_bytes=args.kv_nvme_size,
        nvme_path=Path(args.kv_nvme_path) if args.kv_nvme_path else None,
    )
    # What else decides a block's bytes besides the weights: the KV dtype and the weights'
    # quantization (fp8 KV scales join here once they are calibrated).
    extra = f"kv={kv_cache.dtype};quant={args.quantization};dtype={loaded.dtype}".encode()
    fingerprint = model_fingerprint(
        dataclasses.asdict(loaded.config), weight_files(model_path), extra=extra
    )
    store = TieredBlockStore(kv_cache, config, fingerprint=fingerprint, metrics=registry.metrics)
    log.info("KV tiers: %s", store.describe())
    return KvTiers(store, block_manager)
