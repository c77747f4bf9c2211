"""Multi-turn conversations through an engine whose NVMe tier sits on a disk far smaller
than the tier's size; reports its tokens and tier counters as JSON.

`python -m tests.engine.kv_tiers_full_disk CHECKPOINT DISK` (run by test_kv_tiers.py in a
private mount namespace where DISK is a tiny tmpfs).
"""

from __future__ import annotations

import json
import sys

import torch

from infleet.engine.loader import load_model
from tests.engine.test_kv_tiers import FILE, SLOT, conversations, engine, tier_samples


def main(checkpoint: str, disk: str) -> None:
    torch.set_num_threads(1)
    tiny = (checkpoint, load_model(checkpoint, device="cpu", dtype="float32"))
    # DRAM holds little, so returning turns go to a disk that filled up long ago.
    eng = engine(tiny, kv_dram_size=16 * SLOT, kv_nvme_size=1024 * FILE, kv_nvme_path=disk)
    got = conversations(eng)
    eng.record_metrics()
    m = tier_samples(eng)
    store = eng.core.tiers.store  # type: ignore[union-attr]
    report = {
        "tokens": got,
        "nvme_hits": m["infleet:kv_tier_hits_total", "nvme"],
        "nvme_dropped": m["infleet:kv_tier_dropped_blocks_total", "nvme"],
        "capacity": store.nvme.capacity_bytes,  # type: ignore[union-attr]
        "configured": 1024 * FILE,
    }
    eng.core.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
