"""Real KV pools, chained block keys and stores on real directories for the tier tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from prometheus_client import CollectorRegistry

from infleet.kv_tiering import TierConfig, TieredBlockStore, TierMetrics
from infleet.kv_tiering.layout import BlockLayout

FINGERPRINT = hashlib.sha256(b"tiny model").digest()
OTHER_MODEL = hashlib.sha256(b"another model").digest()
LAYERS, BLOCK_SIZE, HEADS, HEAD_DIM = 2, 4, 2, 8


def random_pool(num_blocks: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    """A device pool `[2, layers, blocks, block_size, heads, head_dim]` of distinct values."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(2, LAYERS, num_blocks, BLOCK_SIZE, HEADS, HEAD_DIM, generator=g)
    return pool.to(dtype)


def chain_keys(n: int, salt: bytes = b"") -> list[bytes]:
    """n chained 16-byte keys, as the engine's block hashes are."""
    keys, parent = [], b""
    for i in range(n):
        parent = hashlib.blake2b(parent + salt + i.to_bytes(4, "little"), digest_size=16).digest()
        keys.append(parent)
    return keys


def slot_bytes(pool: torch.Tensor) -> int:
    return BlockLayout.of_pool(pool).slot_bytes


def file_bytes(pool: torch.Tensor) -> int:
    return 4096 + slot_bytes(pool)


def make_store(
    pool: torch.Tensor,
    *,
    dram_blocks: int,
    nvme_dir: Path | None = None,
    nvme_blocks: int = 0,
    fingerprint: bytes = FINGERPRINT,
    **config,
) -> tuple[TieredBlockStore, CollectorRegistry]:
    registry = CollectorRegistry()
    cfg = TierConfig(
        dram_bytes=dram_blocks * slot_bytes(pool),
        nvme_bytes=nvme_blocks * file_bytes(pool),
        nvme_path=nvme_dir,
        **config,
    )
    store = TieredBlockStore(
        pool, cfg, fingerprint=fingerprint, metrics=TierMetrics(registry, "tiny")
    )
    return store, registry


def sample(registry: CollectorRegistry, name: str, tier: str | None = None) -> float:
    labels = {"model_name": "tiny"} | ({"tier": tier} if tier else {})
    value = registry.get_sample_value(f"infleet:{name}", labels)
    return 0.0 if value is None else value


def block_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.kv"))
