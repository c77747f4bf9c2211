"""KV block store below the device pool: DRAM and NVMe tiers (docs/kv_tiering.md).

May import torch; never the engine (the engine imports this package)."""

from infleet.kv_tiering.completion import TransferHandle
from infleet.kv_tiering.config import Tier, TierConfig
from infleet.kv_tiering.cost import PreemptionCosts, choose_preemption
from infleet.kv_tiering.fingerprint import model_fingerprint
from infleet.kv_tiering.layout import BlockLayout
from infleet.kv_tiering.metrics import TierMetrics
from infleet.kv_tiering.store import TieredBlockStore
from infleet.kv_tiering.write_through import FlushReport

__all__ = [
    "BlockLayout",
    "FlushReport",
    "PreemptionCosts",
    "Tier",
    "TierConfig",
    "TierMetrics",
    "TieredBlockStore",
    "TransferHandle",
    "choose_preemption",
    "model_fingerprint",
]
