"""Micro-benchmark of the KV tier store: the transfer unit, and spill/restore throughput
per tier, each beside its hardware peer measured in the same run.

- unit: device pool -> DRAM slots and back, three ways: a copy per layer and K/V piece
  (2 x layers copies per block, what a layer-first layout costs), one strided copy per
  block (the store's CPU path), and one gather kernel then a contiguous copy per block
  (the store's CUDA path). Peer: one contiguous copy of the same bytes.
- dram: TieredBlockStore.spill / restore through the DRAM tier, whole store overhead.
- nvme: write-through (rate cap off) until flushed, then a restart on the same directory
  and restores from NVMe, direct and buffered I/O. Peer: one large O_DIRECT file written
  and read sequentially in 4 MiB pieces. Buffered reads may come from the page cache.
- checksum: CRC-32 (what the files carry) against SHA-256 and BLAKE2b on one block.

    .venv/bin/python bench/kv_tiering.py --shapes smollm2-135m llama-3.1-8b --dir /tmp/kvbench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import torch

from infleet.engine.args import parse_size
from infleet.kv_tiering import TierConfig, TieredBlockStore
from infleet.kv_tiering.direct_io import aligned_buffer
from infleet.kv_tiering.dram_tier import DramTier
from infleet.kv_tiering.layout import BlockLayout

# name -> (layers, kv_heads, head_dim, dtype on the benchmark's device)
SHAPES = {
    "smollm2-135m": (30, 3, 64, {"cpu": torch.float32, "cuda": torch.bfloat16}),
    "llama-3.1-8b": (32, 8, 128, {"cpu": torch.bfloat16, "cuda": torch.bfloat16}),
}
BLOCK_SIZE = 16
GB = 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeat: int = 5) -> float:
    """Median of `repeat` runs in seconds (`fn(i)` for run i); shared cores are noisy."""
    times = []
    for i in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn(i)
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def unit_choice(kv: torch.Tensor, dram: DramTier, ids: list[int]) -> dict:
    device, layers = kv.device, kv.shape[1]
    slots = [dram.view(i) for i in range(len(ids))]
    nbytes = len(ids) * dram.layout.block_bytes

    def per_layer_out():
        for slot, b in zip(slots, ids, strict=True):
            for k in range(2):
                for layer in range(layers):
                    slot[k, layer].copy_(kv[k, layer, b], non_blocking=True)

    def per_layer_in():
        for slot, b in zip(slots, ids, strict=True):
            for k in range(2):
                for layer in range(layers):
                    kv[k, layer, b].copy_(slot[k, layer], non_blocking=True)

    def per_block_out():
        for slot, b in zip(slots, ids, strict=True):
            slot.copy_(kv[:, :, b], non_blocking=True)

    def per_block_in():
        for slot, b in zip(slots, ids, strict=True):
            kv[:, :, b].copy_(slot, non_blocking=True)

    def gathered_out():
        staged = torch.stack([kv[:, :, b] for b in ids])
        for slot, unit in zip(slots, staged, strict=True):
            slot.copy_(unit, non_blocking=True)

    def gathered_in():
        staged = torch.empty((len(ids), *dram.layout.shape), dtype=kv.dtype, device=device)
        for unit, slot in zip(staged, slots, strict=True):
            unit.copy_(slot, non_blocking=True)
        kv.index_copy_(2, torch.tensor(ids, device=device), staged.movedim(0, 2))

    flat = dram.slab[: len(ids)].view(-1)[:nbytes]
    source = torch.empty(nbytes, dtype=torch.uint8, device=device)
    out = {"blocks": len(ids), "bytes": nbytes}
    for name, fn in [
        ("per_layer_spill", per_layer_out), ("per_layer_restore", per_layer_in),
        ("per_block_spill", per_block_out), ("per_block_restore", per_block_in),
        ("gathered_spill", gathered_out), ("gathered_restore", gathered_in),
        ("peer_contiguous_copy", lambda: flat.copy_(source, non_blocking=True)),
    ]:  # fmt: skip
        out[name + "_GBps"] = round(nbytes / timed(lambda _, f=fn: f(), device) / GB, 2)
    return out


def store_dram(kv: torch.Tensor, config: TierConfig, ids: list[int]) -> dict:
    store = TieredBlockStore(kv, config, fingerprint=bytes(32))
    nbytes = len(ids) * store.layout.block_bytes

    def keys(run: int) -> list[bytes]:  # new keys each run: each spill copies every block
        return [(run * len(ids) + i).to_bytes(16, "little") for i in range(len(ids))]

    spill = timed(lambda run: store.spill(keys(run), ids).wait(60), kv.device)
    restore = timed(lambda _: store.restore(keys(4), ids).wait(60), kv.device)
    store.close(5)
    return {"spill_GBps": round(nbytes / spill / GB, 2), "restore_GBps": round(nbytes / restore / GB, 2)}  # fmt: skip


def store_nvme(kv: torch.Tensor, root: Path, ids: list[int], direct: bool) -> dict:
    layout = BlockLayout.of_pool(kv)
    nbytes = len(ids) * layout.block_bytes
    files = len(ids) * (4096 + layout.slot_bytes)
    config = TierConfig(
        dram_bytes=2 * len(ids) * layout.slot_bytes, nvme_bytes=2 * files, nvme_path=root,
        direct_io=direct, write_bytes_per_s=1e15, write_queue_bytes=1 << 40, io_threads=4,
    )  # fmt: skip
    keys = [(i + 1000 * direct).to_bytes(16, "little") for i in range(len(ids))]
    store = TieredBlockStore(kv, config, fingerprint=bytes(32))
    start = time.perf_counter()
    assert all(store.spill(keys, ids).ok) and store.flush(600)
    write = time.perf_counter() - start
    store.close(60)
    store = TieredBlockStore(kv, config, fingerprint=bytes(32))  # a restart: DRAM empty
    start = time.perf_counter()
    handle = store.restore(keys, ids)
    assert handle.wait(600) and handle.num_done == len(ids)
    sync(kv.device)
    read = time.perf_counter() - start
    io = "direct" if store.nvme.direct_io else "buffered"
    store.close(5)
    shutil.rmtree(store.nvme.dir)
    return {
        "io": io,
        "write_through_GBps": round(nbytes / write / GB, 2),
        "restore_GBps": round(nbytes / read / GB, 2),
    }


def disk_peer(root: Path, nbytes: int) -> dict:
    """One big O_DIRECT file written then read in 4 MiB pieces: the disk's own speed."""
    path, chunk = root / "peer.bin", 4 << 20
    buf = aligned_buffer(chunk)
    flags = os.O_CREAT | os.O_TRUNC | os.O_RDWR | getattr(os, "O_DIRECT", 0)
    fd = os.open(path, flags, 0o600)
    try:
        pieces = max(1, nbytes // chunk)
        start = time.perf_counter()
        for i in range(pieces):
            os.pwrite(fd, buf, i * chunk)
        os.fsync(fd)
        write = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(pieces):
            os.preadv(fd, [buf], i * chunk)
        read = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    done = pieces * chunk
    return {"write_GBps": round(done / write / GB, 2), "read_GBps": round(done / read / GB, 2)}


def checksums(block_bytes: int) -> dict:
    data = os.urandom(block_bytes)
    out = {}
    for name, fn in [
        ("crc32", zlib.crc32),
        ("sha256", lambda d: hashlib.sha256(d).digest()),
        ("blake2b", lambda d: hashlib.blake2b(d, digest_size=16).digest()),
    ]:
        start = time.perf_counter()
        for _ in range(20):
            fn(data)
        out[name + "_GBps"] = round(20 * block_bytes / (time.perf_counter() - start) / GB, 2)
    return out


def run_shape(name: str, device: torch.device, total: int, root: Path) -> dict:
    layers, heads, head_dim, dtypes = SHAPES[name]
    dtype = dtypes[device.type]
    layout = BlockLayout(layers, BLOCK_SIZE, heads, head_dim, dtype)
    n = max(8, total // layout.block_bytes)
    kv = torch.randn(2, layers, 2 * n, BLOCK_SIZE, heads, head_dim, device=device).to(dtype)
    ids = list(range(1, 2 * n, 2))  # every other block: scattered, as in a used pool
    dram = DramTier(layout, n * layout.slot_bytes, pin=device.type == "cuda")
    result = {"block_bytes": layout.block_bytes, "dtype": str(dtype), "unit": unit_choice(kv, dram, ids)}  # fmt: skip
    dram.close()
    result["dram"] = store_dram(kv, TierConfig(dram_bytes=n * layout.slot_bytes), ids)
    result["nvme"] = [store_nvme(kv, root, ids, direct) for direct in (True, False)]
    result["nvme_peer"] = disk_peer(root, n * layout.block_bytes)
    result["checksum"] = checksums(layout.block_bytes)
    return result


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bytes", type=parse_size, default=parse_size("256MiB"), help="KV moved per test")  # fmt: skip
    p.add_argument("--dir", type=Path, default=None, help="NVMe directory (default: a temp dir)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="kvbench-", dir=args.dir))
    device = torch.device(args.device)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    report = {
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%d"),
        "device": describe_device(device),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "bytes_per_test": args.bytes,
        "shapes": {},
    }
    try:
        for name in args.shapes:
            report["shapes"][name] = run_shape(name, device, args.bytes, root)
            print(name, json.dumps(report["shapes"][name], indent=1), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
