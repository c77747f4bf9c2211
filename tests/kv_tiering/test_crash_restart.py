"""A writer process killed by SIGKILL mid-write, or stopped by SIGTERM, then a restart on
the same directory: the index is rebuilt from the files, every block it offers restores
bit-exact, and nothing half-written is left or served."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import torch

from infleet.kv_tiering import Tier
from tests.conftest import REPO
from tests.kv_tiering.blocks import block_files, make_store, random_pool
from tests.kv_tiering.writer_process import POOL_BLOCKS, round_blocks, round_keys


def start_writer(root, rounds: int, bytes_per_s: float) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.kv_tiering.writer_process",
            str(root),
            str(rounds),
            str(bytes_per_s),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen, done, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"writer exited early (rc {proc.poll()})"
        if done(line):
            return line
    raise AssertionError("writer too slow")


def restored_rounds(root, rounds: int) -> tuple[int, int]:
    """Restart on `root`; restore every round the index offers and check its bytes.
    Returns (blocks found on NVMe, blocks restored)."""
    expected = random_pool(POOL_BLOCKS, seed=1)
    pool = torch.zeros_like(expected)
    store, _ = make_store(pool, dram_blocks=16, nvme_dir=root, nvme_blocks=1024)
    found = restored = 0
    for r in range(rounds):
        keys = round_keys(r)
        present = [k for k in keys if k in store.nvme]
        found += len(present)
        for key, block in zip(keys, round_blocks(r), strict=True):
            if key not in store.nvme:
                continue
            assert store.lookup([key]) == [Tier.NVME]
            handle = store.restore([key], [0])
            assert handle.wait(10) and handle.num_done == 1
            assert torch.equal(pool[:, :, 0], expected[:, :, block])
            restored += 1
    assert not list(root.rglob("*.tmp"))
    store.close(5)
    return found, restored


def test_sigkill_mid_write_then_restart_serves_only_whole_blocks(tmp_path):
    # No rate cap: the writer is busy writing files back to back when the kill lands.
    writer = start_writer(tmp_path, rounds=200, bytes_per_s=1e12)
    try:
        read_until(writer, lambda line: line.startswith("round") and int(line.split()[-1]) >= 24)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    assert writer.returncode == -signal.SIGKILL
    on_disk = len(block_files(tmp_path))
    found, restored = restored_rounds(tmp_path, 200)
    assert found >= 24 and restored == found
    assert found == on_disk  # every complete file is indexed, nothing else


def test_sigterm_flushes_the_write_queue_within_the_grace_period(tmp_path):
    # Slow write-through (~5 blocks/s) so most blocks are still queued at SIGTERM.
    block_file = 4096 + 2 * 2 * 4 * 2 * 8 * 4
    writer = start_writer(tmp_path, rounds=6, bytes_per_s=block_file * 5)
    try:
        read_until(writer, lambda line: line.strip() == "spilled")
        writer.send_signal(signal.SIGTERM)
        line = read_until(writer, lambda line: line.startswith("flushed"))
        writer.wait(30)
    finally:
        writer.kill()
    assert writer.returncode == 0
    written = int(line.split()[1].split("=")[1])
    assert written > 24 and line.split()[2] == "abandoned=0"  # most were still queued
    found, restored = restored_rounds(tmp_path, 6)
    assert found == restored == 48
