"""Write-through: a bounded queue that drops rather than waits, a byte rate cap, and a
flush bounded by the grace period."""

from __future__ import annotations

import threading
import time

from infleet.kv_tiering.write_through import WriteThrough
from tests.kv_tiering.blocks import chain_keys, file_bytes, make_store, random_pool, sample


def test_a_full_queue_refuses_blocks_instead_of_waiting():
    release = threading.Event()
    written = []

    def write(item):
        release.wait(10)
        written.append(item)
        return 100

    wt = WriteThrough(write, max_queue=3, bytes_per_s=1e12)
    start = time.monotonic()
    accepted = [wt.offer(i) for i in range(10)]
    assert time.monotonic() - start < 0.5  # offers never block
    # One is being written (taken off the queue), three wait, the rest are refused.
    assert sum(accepted) in (3, 4) and accepted[:3] == [True] * 3
    release.set()
    report = wt.close(5)
    assert report.abandoned == 0 and written == [i for i, ok in enumerate(accepted) if ok]


def test_the_rate_cap_spaces_writes_and_a_flush_lifts_it():
    stamps = []

    def write(item):
        stamps.append(time.monotonic())
        return 1000

    wt = WriteThrough(write, max_queue=100, bytes_per_s=20_000)  # 20 writes/s
    for i in range(6):
        wt.offer(i)
    deadline = time.monotonic() + 10
    while len(stamps) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stamps[-1] - stamps[0] >= 5 * 0.05 * 0.9  # five gaps of >= 50 ms
    for i in range(50):
        wt.offer(i)
    start = time.monotonic()
    report = wt.close(5)  # 50 more would take 2.5 s at the cap
    assert report.written == 50 and report.abandoned == 0
    assert time.monotonic() - start < 1.5


def test_a_flush_stops_at_the_grace_period_and_reports_what_it_left():
    def write(item):
        time.sleep(0.05)
        return 1

    wt = WriteThrough(write, max_queue=100, bytes_per_s=1e12)
    for i in range(100):
        wt.offer(i)
    start = time.monotonic()
    report = wt.close(0.3)
    assert time.monotonic() - start < 2
    assert report.written + report.abandoned <= 100 and report.abandoned >= 80
    assert not wt.offer(1)  # closed


def test_under_pressure_the_store_drops_nvme_writes_and_requests_never_wait(tmp_path):
    pool = random_pool(64)
    # A slow disk (10 files/s) and a queue of 4 blocks: bursts of spills overflow it.
    store, registry = make_store(
        pool,
        dram_blocks=64,
        nvme_dir=tmp_path,
        nvme_blocks=64,
        write_bytes_per_s=10 * file_bytes(pool),
        write_queue_bytes=4 * 4096,
    )
    start = time.monotonic()
    for i in range(0, 64, 8):
        assert store.spill(chain_keys(8, salt=bytes([i])), list(range(i, i + 8))).wait(10)
    assert time.monotonic() - start < 2  # spills never waited for the disk
    assert sample(registry, "kv_tier_dropped_blocks_total", "nvme") >= 64 - 4 - 8
    assert sample(registry, "kv_tier_dropped_blocks_total", "dram") == 0
    report = store.close(10)
    assert report.abandoned == 0 and report.written <= 5  # the queue and one in flight
