"""Building the engine's KV tiers from its flags: the store, its fingerprint, its metrics
registry (engine/core/kv_tiers.py is what the engine does with them)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from prometheus_client import CollectorRegistry, generate_latest

from infleet.engine.args import EngineArgs
from infleet.engine.core.block_manager import BlockManager
from infleet.engine.core.kv_tiers import KvTiers
from infleet.engine.loader import LoadedModel
from infleet.kv_tiering import TierConfig, TieredBlockStore, TierMetrics, model_fingerprint

log = logging.getLogger("infleet.engine")


class TierRegistry:
    """The tiers' metrics live in the core (its threads record them); the API side's
    /metrics appends this registry's text, which travels in CoreStats."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        self.metrics = TierMetrics(self.registry, model_name)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def weight_files(model_path: Path) -> list[Path]:
    if model_path.is_file():
        return [model_path]
    return sorted([*model_path.glob("*.safetensors"), *model_path.glob("*.gguf")])


def build_kv_tiers(
    args: EngineArgs, loaded: LoadedModel, kv_cache: torch.Tensor, block_manager: BlockManager,
    model_path: Path, registry: TierRegistry,
) -> KvTiers:  # fmt: skip
    """The store for --kv-dram-size/--kv-nvme-size/--kv-nvme-path; ValueError names the flag."""
    if not args.enable_prefix_caching:
        raise ValueError("--kv-dram-size needs prefix caching (blocks are found by their hash)")
    config = TierConfig(
        dram_bytes=args.kv_dram_size,
        nvme_bytes=args.kv_nvme_size,
        nvme_path=Path(args.kv_nvme_path) if args.kv_nvme_path else None,
    )
    # What else decides a block's bytes besides the weights: the KV dtype and the weights'
    # quantization (fp8 KV scales join here once they are calibrated).
    extra = f"kv={kv_cache.dtype};quant={args.quantization};dtype={loaded.dtype}".encode()
    fingerprint = model_fingerprint(
        dataclasses.asdict(loaded.config), weight_files(model_path), extra=extra
    )
    store = TieredBlockStore(kv_cache, config, fingerprint=fingerprint, metrics=registry.metrics)
    log.info("KV tiers: %s", store.describe())
    return KvTiers(store, block_manager)
