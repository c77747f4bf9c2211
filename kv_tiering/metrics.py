"""Prometheus metrics of the KV tiers (names in docs/contracts.md), registered by the
engine on its own registry.

Label `tier` is `dram` or `nvme`. Lookups go down the tiers in order, so a block found on
NVMe counts as a DRAM miss and an NVMe hit, and a block found nowhere as a miss on both
(a cache hierarchy's usual accounting: `hits / (hits + misses)` is each tier's own hit
ratio). Counters count blocks and bytes, not ratios, so PromQL can rate them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from infleet.kv_tiering.completion import TransferHandle

TIERS = ("dram", "nvme")
_P = "infleet:"
# From a DRAM restore of one block on a GPU (~100 us) to a queued NVMe read on a busy disk.
_LATENCY_BUCKETS = (
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)

# attribute -> (kind, name, help); every one is labelled model_name, tier.
_PER_TIER = {
    "hits": (Counter, "kv_tier_hits_total", "KV blocks found in this tier."),
    "misses": (Counter, "kv_tier_misses_total", "KV blocks looked up here and not found."),
    "read_bytes": (Counter, "kv_tier_read_bytes_total", "Bytes of KV blocks read from here."),
    "written_bytes": (Counter, "kv_tier_written_bytes_total", "Bytes of KV blocks written here."),
    "restore_seconds": (
        Histogram,
        "kv_tier_restore_seconds",
        "From asking for a restore until its blocks are in the device pool, labelled with "
        "the slowest tier the restore read from.",
    ),
    "spill_seconds": (
        Histogram,
        "kv_tier_spill_seconds",
        "dram: a spill from the device pool until its copy finished; nvme: one block file written.",
    ),
    "usage_bytes": (Gauge, "kv_tier_usage_bytes", "Bytes of KV blocks this tier holds."),
    "capacity_bytes": (Gauge, "kv_tier_capacity_bytes", "This tier's size limit in bytes."),
    "dropped": (
        Counter,
        "kv_tier_dropped_blocks_total",
        "Blocks not stored here: no idle DRAM slot; or the NVMe write queue was full, the "
        "disk was full or a write failed.",
    ),
}


class TierMetrics:
    hits: dict[str, Counter]
    misses: dict[str, Counter]
    read_bytes: dict[str, Counter]
    written_bytes: dict[str, Counter]
    restore_seconds: dict[str, Histogram]
    spill_seconds: dict[str, Histogram]
    usage_bytes: dict[str, Gauge]
    capacity_bytes: dict[str, Gauge]
    dropped: dict[str, Counter]

    def __init__(self, registry: CollectorRegistry, model_name: str) -> None:
        for attr, (kind, name, doc) in _PER_TIER.items():
            extra = {"buckets": _LATENCY_BUCKETS} if kind is Histogram else {}
            metric = kind(_P + name, doc, ["model_name", "tier"], registry=registry, **extra)
            setattr(self, attr, {tier: metric.labels(model_name, tier) for tier in TIERS})
        self.swaps = Counter(
            _P + "kv_tier_swaps_total",
            "Sequences preempted by swapping their KV to DRAM (apart from "
            "num_preemptions_total, which counts recomputes: a request that lost its KV).",
            ["model_name"],
            registry=registry,
        ).labels(model_name)
        self.bad_files = Counter(
            _P + "kv_tier_bad_files_total",
            "NVMe block files found truncated, corrupt or written for another model (a miss).",
            ["model_name"],
            registry=registry,
        ).labels(model_name)


class TierRecorder:
    """What the store and its threads report; a no-op without metrics. prometheus_client
    metrics are thread-safe, so any thread may record."""

    def __init__(self, metrics: TierMetrics | None) -> None:
        self.metrics = metrics

    def count(self, attr: str, tier: str, amount: float = 1) -> None:
        if self.metrics is not None and amount:
            getattr(self.metrics, attr)[tier].inc(amount)

    def observe(self, attr: str, tier: str, seconds: float) -> None:
        if self.metrics is not None:
            getattr(self.metrics, attr)[tier].observe(seconds)

    def usage(self, tier: str, used: int, capacity: int) -> None:
        if self.metrics is not None:
            self.metrics.usage_bytes[tier].set(used)
            self.metrics.capacity_bytes[tier].set(capacity)

    def spilled(self, handle: TransferHandle) -> None:
        """A spill or swap-out handle finished."""
        if handle.seconds is not None:
            self.observe("spill_seconds", "dram", handle.seconds)

    def restored(self, handle: TransferHandle) -> None:
        """A restore or swap-in handle finished."""
        if handle.seconds is not None and any(handle.ok):
            self.observe("restore_seconds", handle.tier, handle.seconds)

    def bad_file(self) -> None:
        if self.metrics is not None:
            self.metrics.bad_files.inc()
