"""The CUDA path: copies on a side stream ordered after the engine's stream, pinned DRAM,
and handles that answer without blocking. Skipped without a GPU (these tests have not
run yet: no GPU was lent while the tiers were built; docs/kv_tiering.md)."""

from __future__ import annotations

import time

import pytest
import torch

from tests.kv_tiering.blocks import chain_keys, make_store, random_pool

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def busy_stream(seconds_hint: int = 64) -> None:
    """Queue a few hundred ms of matmuls on the current stream without waiting."""
    x = torch.randn(4096, 4096, device="cuda")
    for _ in range(seconds_hint):
        x = x @ x
        x = x / x.norm()


def test_spill_and_restore_on_the_gpu_are_bit_exact_through_pinned_dram_and_nvme(tmp_path):
    pool = random_pool(16, torch.bfloat16).cuda()
    original = pool.clone()
    store, _ = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=32)
    assert store.dram.pinned_memory and "(pinned)" in store.describe()
    keys = chain_keys(4)
    assert store.spill(keys, [1, 3, 5, 7]).wait(10) and store.flush(10)
    store.close(5)
    pool.zero_()
    store, _ = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=32)
    assert store.restore(keys, [0, 2, 4, 6]).wait(10)  # from NVMe, through pinned DRAM
    assert torch.equal(pool[:, :, [0, 2, 4, 6]], original[:, :, [1, 3, 5, 7]])
    pool.zero_()
    assert store.restore(keys, [8, 9, 10, 11]).wait(10)  # now from DRAM
    assert torch.equal(pool[:, :, 8:12], original[:, :, [1, 3, 5, 7]])
    store.close(5)


def test_a_restore_queued_behind_a_busy_stream_returns_at_once_and_polls_false():
    pool = random_pool(16, torch.bfloat16).cuda()
    original = pool.clone()
    store, _ = make_store(pool, dram_blocks=8)
    keys = chain_keys(4)
    assert store.spill(keys, [0, 1, 2, 3]).wait(10)
    busy_stream()
    start = time.perf_counter()
    handle = store.restore(keys, [4, 5, 6, 7])
    asked = time.perf_counter() - start
    assert asked < 0.05 and not handle.done()  # the engine's step is not held up
    assert handle.wait(30)
    assert torch.equal(pool[:, :, 4:8], original[:, :, 0:4])
    store.close(5)


def test_fence_orders_the_engines_next_writes_after_the_spill():
    pool = random_pool(8, torch.bfloat16).cuda()
    original = pool.clone()
    store, _ = make_store(pool, dram_blocks=8)
    keys = chain_keys(2)
    busy_stream()
    handle = store.spill(keys, [0, 1])
    handle.fence()  # the current stream now waits for the spill's copies
    pool[:, :, 0:2] = 0  # queued after them: the spill read the old bytes
    assert handle.wait(30)
    assert store.restore(keys, [4, 5]).wait(10)
    assert torch.equal(pool[:, :, 4:6], original[:, :, 0:2])
    store.close(5)
