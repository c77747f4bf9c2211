"""The DRAM tier through the store: exact bytes back, LRU, the size limit, busy slots,
swap preemption, and per-tier metrics."""

from __future__ import annotations

import random

import pytest
import torch

from infleet.kv_tiering import Tier, TierConfig
from tests.kv_tiering.blocks import chain_keys, make_store, random_pool, sample, slot_bytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float8_e4m3fn])
def test_spilled_blocks_come_back_bit_exact_into_other_device_blocks(dtype):
    pool = random_pool(16, dtype)
    original = pool.clone()
    store, registry = make_store(pool, dram_blocks=8)
    keys = chain_keys(6)
    assert store.spill(keys, [3, 7, 1, 0, 12, 9]).wait(10)
    pool.zero_()  # the device blocks are reused for something else
    assert store.lookup(keys) == [Tier.DRAM] * 6
    handle = store.restore(keys, [15, 14, 13, 2, 4, 5])
    assert handle.wait(10) and handle.num_done == 6
    for src, dst in zip([3, 7, 1, 0, 12, 9], [15, 14, 13, 2, 4, 5], strict=True):
        assert torch.equal(pool[:, :, dst].view(torch.uint8), original[:, :, src].view(torch.uint8))
    assert sample(registry, "kv_tier_hits_total", "dram") == 6
    block_bytes = original[:, :, 0].nbytes
    assert sample(registry, "kv_tier_written_bytes_total", "dram") == 6 * block_bytes
    assert sample(registry, "kv_tier_read_bytes_total", "dram") == 6 * block_bytes
    assert sample(registry, "kv_tier_restore_seconds_count", "dram") == 1
    store.close(1)


def test_lookup_stops_at_the_first_missing_block_and_restore_counts_the_miss():
    pool = random_pool(8)
    store, registry = make_store(pool, dram_blocks=8)
    keys = chain_keys(5)
    store.spill([keys[0], keys[1], keys[3]], [0, 1, 3]).wait(10)
    assert store.lookup(keys) == [Tier.DRAM, Tier.DRAM]
    handle = store.restore(keys, [4, 5, 6, 7, 2])
    assert handle.wait(10) and handle.num_done == 2 and handle.ok[2:] == [False] * 3
    assert sample(registry, "kv_tier_hits_total", "dram") == 2
    assert sample(registry, "kv_tier_misses_total", "dram") == 1  # keys[2], then it stops
    assert sample(registry, "kv_tier_misses_total", "nvme") == 0  # no NVMe tier to ask
    store.close(1)


def test_least_recently_used_blocks_are_evicted_first():
    pool = random_pool(8)
    store, registry = make_store(pool, dram_blocks=4)
    keys = chain_keys(6)
    store.spill(keys[:4], [0, 1, 2, 3]).wait(10)
    store.restore(keys[:1], [7]).wait(10)  # keys[0] used again: now the newest
    store.spill(keys[4:], [4, 5]).wait(10)  # evicts keys[1] and keys[2]
    assert [store.lookup([k]) != [] for k in keys] == [True, False, False, True, True, True]
    assert sample(registry, "kv_tier_usage_bytes", "dram") == 4 * slot_bytes(pool)
    store.close(1)


def test_a_spill_larger_than_the_tier_keeps_its_first_blocks_and_drops_the_rest():
    pool = random_pool(10)
    original = pool.clone()
    store, registry = make_store(pool, dram_blocks=4)
    keys = chain_keys(10)
    handle = store.spill(keys, list(range(10)))
    assert handle.wait(10) and handle.ok == [True] * 4 + [False] * 6
    assert sample(registry, "kv_tier_dropped_blocks_total", "dram") == 6
    pool.zero_()
    assert store.restore(keys[:4], [6, 7, 8, 9]).wait(10)
    assert torch.equal(pool[:, :, 6:10], original[:, :, 0:4])
    store.close(1)


def test_the_tier_never_exceeds_its_size_under_random_pressure():
    pool = random_pool(32)
    original = pool.clone()
    store, registry = make_store(pool, dram_blocks=7)
    limit = 7 * slot_bytes(pool)
    rng = random.Random(0)
    keys = chain_keys(40)
    content = {}  # key -> device block whose original bytes it holds
    for _ in range(60):
        picks = rng.sample(range(40), rng.randint(1, 9))
        if rng.random() < 0.6:
            ids = [k % 32 for k in picks]
            store.spill([keys[k] for k in picks], ids)
            content.update({keys[k]: k % 32 for k in picks})
        else:
            run = store.lookup([keys[k] for k in picks])
            targets = rng.sample(range(32), len(run))
            handle = store.restore([keys[k] for k in picks[: len(run)]], targets)
            assert handle.wait(10)
            for k, t in zip(picks[: handle.num_done], targets, strict=False):
                assert torch.equal(pool[:, :, t], original[:, :, content[keys[k]]])
                pool[:, :, t] = original[:, :, t]  # put the device block back
        assert store.dram.used_bytes <= limit
        assert sample(registry, "kv_tier_usage_bytes", "dram") <= limit
    store.close(1)


def test_swap_out_holds_blocks_through_pressure_until_swap_in():
    pool = random_pool(12)
    original = pool.clone()
    store, _ = make_store(pool, dram_blocks=6)
    swap_keys = [b"swap-r1-%d" % i for i in range(3)]
    assert store.swap_room() == 6
    assert store.swap_out(swap_keys, [0, 1, 2]).wait(10)
    assert store.swap_room() == 3
    assert store.swap_out([b"a", b"b", b"c", b"d"], [3, 4, 5, 6]) is None  # no room: recompute
    store.spill(chain_keys(9), list(range(3, 12))).wait(10)  # pressure: only 3 slots move
    assert store.lookup(swap_keys) == []  # swapped blocks are not prefix-cache hits
    pool[:, :, :3] = 0
    assert store.swap_in(swap_keys, [0, 1, 2]).wait(10)
    assert torch.equal(pool[:, :, :3], original[:, :, :3])
    with pytest.raises(KeyError, match="not swapped out"):
        store.swap_in(swap_keys, [0, 1, 2])
    store.spill(chain_keys(3, salt=b"x"), [3, 4, 5]).wait(10)  # swapped-in slots go first
    assert store.swap_room() == 6
    store.close(1)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(dram_bytes=-1), "--kv-dram-size and --kv-nvme-size must be >= 0"),
        (dict(dram_bytes=1 << 20, nvme_bytes=1 << 20), "--kv-nvme-size needs --kv-nvme-path"),
        (dict(dram_bytes=0, nvme_bytes=1 << 20, nvme_path="/x"), "needs --kv-dram-size"),
        (dict(dram_bytes=1 << 20, io_threads=0), "must be positive"),
    ],
)
def test_bad_settings_name_the_flag(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TierConfig(**kwargs)


def test_a_dram_size_below_one_block_is_refused_naming_the_flag():
    pool = random_pool(4)
    with pytest.raises(ValueError, match="--kv-dram-size 100 bytes holds no KV block"):
        from infleet.kv_tiering import TieredBlockStore

        TieredBlockStore(pool, TierConfig(dram_bytes=100), fingerprint=b"f" * 32)


def test_misuse_is_a_clear_error():
    pool = random_pool(4)
    store, _ = make_store(pool, dram_blocks=2)
    with pytest.raises(ValueError, match="2 keys for 1 device blocks"):
        store.spill(chain_keys(2), [0])
    store.close(1)
    with pytest.raises(RuntimeError, match="closed"):
        store.restore(chain_keys(1), [0])
