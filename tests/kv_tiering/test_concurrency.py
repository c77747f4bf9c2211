"""Many restores in flight at once through a small DRAM tier: NVMe reads on several
threads, two restores of the same block while it is still loading, spills competing for
the slots. Every block arrives (the NVMe tier holds them all), bit-exact, and the tiers
stay within their sizes."""

from __future__ import annotations

import random

import torch

from tests.kv_tiering.blocks import chain_keys, file_bytes, make_store, random_pool, slot_bytes


def test_overlapping_restores_and_spills_deliver_exact_blocks(tmp_path):
    pool = random_pool(96)
    original = pool.clone()
    store, _ = make_store(pool, dram_blocks=12, nvme_dir=tmp_path, nvme_blocks=100, io_threads=4)
    keys = chain_keys(32)
    for start in range(0, 32, 4):  # everything on NVMe, the last 12 also in DRAM
        assert store.spill(keys[start : start + 4], list(range(start, start + 4))).wait(10)
        assert store.flush(10)
    assert all(k in store.nvme for k in keys)
    rng = random.Random(1)
    asked = delivered = 0
    for _ in range(15):
        free = list(range(32, 96))
        rng.shuffle(free)
        in_flight = []
        for _ in range(4):
            first = rng.randrange(28)
            wanted = keys[first : first + rng.randint(1, 4)]
            targets = [free.pop() for _ in wanted]
            in_flight.append((first, targets, store.restore(wanted, targets)))
        # A spill of fresh blocks competes for the same DRAM slots meanwhile.
        extra = chain_keys(3, salt=bytes([rng.randrange(256)]))
        store.spill(extra, [free.pop() for _ in extra])
        for first, targets, handle in in_flight:
            assert handle.wait(20), "a restore never finished"
            asked, delivered = asked + len(targets), delivered + handle.num_done
            for j in range(handle.num_done):
                assert torch.equal(pool[:, :, targets[j]], original[:, :, first + j])
        assert store.dram.used_bytes <= 12 * slot_bytes(pool)
        assert store.nvme.used_bytes <= 100 * file_bytes(pool)
        store.poll()
    # Blocks that found every DRAM slot busy were staged by their I/O thread instead.
    assert delivered == asked
    store.close(5)
