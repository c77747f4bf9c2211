"""Fill a tiny filesystem through the NVMe tier and report what happened, as JSON.

`python -m tests.kv_tiering.full_disk_process DIR`: DIR is far smaller than the tier's
configured size. Every spill and restore must still succeed (a full disk only means fewer
blocks on NVMe), and every block the tier offers must come back bit-exact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from infleet.kv_tiering import Tier
from tests.kv_tiering.blocks import block_files, chain_keys, make_store, random_pool, sample


def main(root: str) -> None:
    pool = random_pool(64, seed=3)
    original = pool.clone()
    store, registry = make_store(
        pool, dram_blocks=16, nvme_dir=Path(root), nvme_blocks=1024, write_queue_bytes=1 << 20
    )
    configured = store.nvme.capacity_bytes
    keys = chain_keys(64)
    for start in range(0, 64, 4):
        assert store.spill(keys[start : start + 4], list(range(start, start + 4))).wait(10)
        assert store.flush(10)
    on_nvme = [k for k in keys if k in store.nvme]
    for i, key in enumerate(on_nvme):
        assert store.lookup([key]) in ([Tier.NVME], [Tier.DRAM])
        handle = store.restore([key], [0])
        assert handle.wait(10) and handle.num_done == 1
        assert torch.equal(pool[:, :, 0], original[:, :, keys.index(key)]), i
    report = {
        "configured_bytes": configured,
        "capacity_bytes": store.nvme.capacity_bytes,
        "on_nvme": len(on_nvme),
        "files": len(block_files(Path(root))),
        "dropped": sample(registry, "kv_tier_dropped_blocks_total", "nvme"),
        "written_bytes": sample(registry, "kv_tier_written_bytes_total", "nvme"),
        "most_recent_on_nvme": keys[-1] in store.nvme,
    }
    store.close(5)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
