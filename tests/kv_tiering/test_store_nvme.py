"""The NVMe tier through the store, on real files: write-through, restores through DRAM,
a warm restart, bad files as misses, permissions and the size limit."""

from __future__ import annotations

import os
import shutil
import stat

import pytest
import torch

from infleet.kv_tiering import Tier
from infleet.kv_tiering.direct_io import probe_direct_io
from tests.kv_tiering.blocks import (
    OTHER_MODEL,
    block_files,
    chain_keys,
    file_bytes,
    make_store,
    random_pool,
    sample,
)


def spill_and_write(store, keys, ids):
    assert store.spill(keys, ids).wait(10)
    assert store.flush(10)


def evict_from_dram(store):
    """Push other blocks through DRAM until the earlier ones live on NVMe only."""
    n = store.dram.num_slots
    spill_and_write(store, chain_keys(n, salt=b"filler"), list(range(n)))


def test_blocks_written_through_come_back_from_nvme_after_leaving_dram(tmp_path):
    pool = random_pool(16)
    original = pool.clone()
    store, registry = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=32)
    keys = chain_keys(4)
    spill_and_write(store, keys, [8, 9, 10, 11])
    evict_from_dram(store)
    assert store.lookup(keys) == [Tier.NVME] * 4
    pool[:, :, 12:] = 0
    handle = store.restore(keys, [12, 13, 14, 15])
    assert handle.wait(10) and handle.num_done == 4
    assert torch.equal(pool[:, :, 12:], original[:, :, 8:12])
    assert store.lookup(keys) == [Tier.DRAM] * 4  # promoted on the way up
    assert sample(registry, "kv_tier_hits_total", "nvme") == 4
    assert sample(registry, "kv_tier_misses_total", "dram") == 4
    assert sample(registry, "kv_tier_restore_seconds_count", "nvme") == 1
    # Those 4 and 4 of the 8 fillers: the write queue holds at most half the DRAM tier.
    assert sample(registry, "kv_tier_written_bytes_total", "nvme") == 8 * file_bytes(pool)
    assert sample(registry, "kv_tier_dropped_blocks_total", "nvme") == 4
    assert sample(registry, "kv_tier_read_bytes_total", "nvme") == 4 * file_bytes(pool)
    store.close(5)


def test_a_warm_restart_finds_the_blocks_an_earlier_store_wrote(tmp_path):
    pool = random_pool(12)
    original = pool.clone()
    store, _ = make_store(pool, dram_blocks=12, nvme_dir=tmp_path, nvme_blocks=32)
    keys = chain_keys(6)
    spill_and_write(store, keys, list(range(6)))
    store.close(5)
    pool.zero_()
    again, registry = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=32)
    assert "6 found from an earlier run" in again.describe()
    assert again.lookup(keys) == [Tier.NVME] * 6
    assert again.restore(keys, [6, 7, 8, 9, 10, 11]).wait(10)
    assert torch.equal(pool[:, :, 6:], original[:, :, :6])
    assert sample(registry, "kv_tier_usage_bytes", "nvme") == 6 * file_bytes(pool)
    again.close(5)


def test_files_are_private_and_live_under_the_model_fingerprint(tmp_path):
    pool = random_pool(4)
    store, _ = make_store(pool, dram_blocks=4, nvme_dir=tmp_path, nvme_blocks=8)
    spill_and_write(store, chain_keys(2), [0, 1])
    (model_dir,) = tmp_path.iterdir()
    assert stat.S_IMODE(model_dir.stat().st_mode) == 0o700
    files = block_files(tmp_path)
    assert len(files) == 2
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
        assert f.stat().st_size == file_bytes(pool)
    store.close(5)


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[4096 + 100] ^= 0xFF  # one payload byte
    path.write_bytes(bytes(data))


def _truncate(path):
    with path.open("r+b") as f:
        f.truncate(4096 + 1000)


def _foreign(path, tmp_path):
    """The same block name, written by a store of another model."""
    other_pool = random_pool(4, seed=9)
    other, _ = make_store(
        other_pool,
        dram_blocks=2,
        nvme_dir=tmp_path / "other",
        nvme_blocks=4,
        fingerprint=OTHER_MODEL,
    )
    key = bytes.fromhex(path.name.removesuffix(".kv"))
    spill_and_write(other, [key], [0])
    other.close(5)
    (theirs,) = block_files(tmp_path / "other")
    shutil.copyfile(theirs, path)


def _bad_header(path):
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01  # inside the fingerprint: the header checksum no longer matches
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "foreign", "bad-header"])
def test_a_bad_file_is_a_miss_and_the_restore_stops_there(tmp_path, damage):
    pool = random_pool(12)
    original = pool.clone()
    store, registry = make_store(pool, dram_blocks=8, nvme_dir=tmp_path / "kv", nvme_blocks=32)
    keys = chain_keys(4)
    spill_and_write(store, keys, [0, 1, 2, 3])
    evict_from_dram(store)
    victim = store.nvme.path(keys[2])
    {"corrupt": _corrupt, "truncated": _truncate, "bad-header": _bad_header}.get(
        damage, lambda p: _foreign(p, tmp_path)
    )(victim)
    pool[:, :, 8:] = 0
    handle = store.restore(keys, [8, 9, 10, 11])
    assert handle.wait(10)
    assert handle.num_done == 2  # prefill would start at block 2
    assert handle.ok[2] is False
    assert torch.equal(pool[:, :, 8:10], original[:, :, 0:2])
    assert not victim.exists()  # a bad file is deleted
    assert store.lookup(keys) == [Tier.DRAM, Tier.DRAM]
    assert sample(registry, "kv_tier_misses_total", "nvme") == 1
    assert sample(registry, "kv_tier_bad_files_total") == 1
    store.close(5)


def test_start_up_removes_a_killed_writers_temporary_and_truncated_files(tmp_path):
    pool = random_pool(8)
    store, _ = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=16)
    keys = chain_keys(3)
    spill_and_write(store, keys, [0, 1, 2])
    store.close(5)
    good, short, _ = block_files(tmp_path)
    tmp = good.with_name(good.name + ".4242.tmp")
    shutil.copyfile(good, tmp)
    _truncate(short)
    (good.parent / "junk.txt").write_text("not ours to read, but in our directory")
    again, _ = make_store(pool, dram_blocks=4, nvme_dir=tmp_path, nvme_blocks=16)
    assert len(again.nvme.index) == 2
    assert not tmp.exists() and not short.exists()
    again.close(5)


def test_the_nvme_tier_never_exceeds_its_size_and_evicts_the_oldest_files(tmp_path):
    pool = random_pool(32)
    original = pool.clone()
    store, registry = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=10)
    limit = 10 * file_bytes(pool)
    keys = chain_keys(32)
    for start in range(0, 32, 4):
        spill_and_write(store, keys[start : start + 4], list(range(start, start + 4)))
        on_disk = sum(f.stat().st_size for f in block_files(tmp_path))
        assert on_disk <= limit and store.nvme.used_bytes <= limit
        assert sample(registry, "kv_tier_usage_bytes", "nvme") <= limit
    # The 10 newest are on NVMe (the last 8 also in DRAM); the oldest were deleted.
    assert store.lookup(keys[:22]) == []
    assert len(store.lookup(keys[22:])) == 10
    pool.zero_()
    # 10 blocks through 8 DRAM slots: those that find no idle slot are staged by the I/O
    # thread, and the DRAM blocks of this restore are not evicted to make room.
    handle = store.restore(keys[22:], list(range(10)))
    assert handle.wait(10) and handle.num_done == 10
    assert torch.equal(pool[:, :, :10], original[:, :, 22:])
    assert sample(registry, "kv_tier_hits_total", "dram") == 8
    assert sample(registry, "kv_tier_hits_total", "nvme") == 2
    store.close(5)


def test_restart_with_a_smaller_size_keeps_the_most_recently_used_files(tmp_path):
    pool = random_pool(8)
    store, _ = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=16)
    keys = chain_keys(6)
    for i, key in enumerate(keys):
        spill_and_write(store, [key], [i])
    store.close(5)
    oldest_first = sorted(block_files(tmp_path), key=lambda p: p.stat().st_mtime_ns)
    for n, path in enumerate(oldest_first):  # make the order unambiguous on coarse clocks
        os.utime(path, ns=(n * 10**9, n * 10**9))
    again, _ = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=3)
    assert set(again.nvme.index) == {bytes.fromhex(p.stem) for p in oldest_first[3:]}
    assert len(block_files(tmp_path)) == 3
    again.close(5)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "buffered"])
def test_direct_and_buffered_io_give_the_same_blocks(tmp_path, direct):
    pool = random_pool(12)
    original = pool.clone()
    store, _ = make_store(pool, dram_blocks=8, nvme_dir=tmp_path, nvme_blocks=16, direct_io=direct)
    # ext4/xfs take O_DIRECT; a filesystem that refuses it falls back to buffered I/O.
    assert store.nvme.direct_io == (direct and probe_direct_io(store.nvme.dir))
    keys = chain_keys(4)
    spill_and_write(store, keys, [0, 1, 2, 3])
    evict_from_dram(store)
    assert store.lookup(keys) == [Tier.NVME] * 4
    pool[:, :, 8:] = 0
    assert store.restore(keys, [8, 9, 10, 11]).wait(10)
    assert torch.equal(pool[:, :, 8:], original[:, :, :4])
    store.close(5)
