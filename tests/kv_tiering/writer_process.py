"""A process that spills blocks to a tiered store until it is killed or told to stop.

`python -m tests.kv_tiering.writer_process DIR ROUNDS BYTES_PER_S`: round r spills 8
blocks (keys `round_keys(r)`, contents `pool[:, :, round_blocks(r)]` of `random_pool(64,
seed=1)`) and prints `round r indexed N` (N: block files on NVMe so far). On SIGTERM it
closes the store with a 30 s grace period and prints the flush report.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from tests.kv_tiering.blocks import chain_keys, make_store, random_pool

BLOCKS_PER_ROUND = 8
POOL_BLOCKS = 64


def round_keys(r: int) -> list[bytes]:
    return chain_keys(BLOCKS_PER_ROUND, salt=f"round-{r}".encode())


def round_blocks(r: int) -> list[int]:
    return [(r * BLOCKS_PER_ROUND + j) % POOL_BLOCKS for j in range(BLOCKS_PER_ROUND)]


def main(root: str, rounds: int, bytes_per_s: float) -> None:
    pool = random_pool(POOL_BLOCKS, seed=1)
    store, _ = make_store(
        pool,
        dram_blocks=256,
        nvme_dir=Path(root),
        nvme_blocks=1024,
        write_bytes_per_s=bytes_per_s,
        write_queue_bytes=1 << 30,
    )

    def stop(signum, frame):
        report = store.close(30.0)
        print(f"flushed written={report.written} abandoned={report.abandoned}", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    for r in range(rounds):
        store.spill(round_keys(r), round_blocks(r)).wait(10)
        print(f"round {r} indexed {len(store.nvme.index)}", flush=True)
    print("spilled", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
