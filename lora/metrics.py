"""The LoRA metrics, registered into the engine's registry (names in docs/contracts.md).

`infleet:lora_requests_info` is vLLM's `lora_requests_info` gauge: its value is the time of
the last update and its labels carry the state (`running_lora_adapters` and
`waiting_lora_adapters` as comma-separated names, `max_lora`). Unlike vLLM, the old label
set is removed at each update, so the series count stays one however many adapters come
and go. The load / eviction / failure counters take AdapterCache's running totals.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from infleet.lora.cache import CacheStats

_P = "infleet:"


class LoRAMetrics:
    def __init__(self, registry: CollectorRegistry, model_name: str, max_loras: int) -> None:
        self._max_lora = str(max_loras)
        self.info = Gauge(
            _P + "lora_requests_info",
            "Running stats on LoRA requests (value: time of the last update).",
            ["running_lora_adapters", "waiting_lora_adapters", "max_lora"],
            registry=registry,
        )
        tier = ["model_name", "tier"]
        self.loads = Counter(
            _P + "lora_loads_total", "Adapters loaded into host memory or a device slot.",
            tier, registry=registry,
        )  # fmt: skip
        self.evictions = Counter(
            _P + "lora_evictions_total", "Adapters evicted from host memory or a device slot.",
            tier, registry=registry,
        )  # fmt: skip
        self.failures = Counter(
            _P + "lora_load_failures_total", "Adapter loads that failed.",
            ["model_name"], registry=registry,
        )  # fmt: skip
        self._model = model_name
        self._seen = CacheStats()

    def record(self, stats: CacheStats, running: Iterable[str], waiting: Iterable[str]) -> None:
        """After a step: the cache's totals and the adapters of running / waiting requests."""
        self.info.clear()
        self.info.labels(
            ",".join(sorted(set(running))), ",".join(sorted(set(waiting))), self._max_lora
        ).set_to_current_time()
        m = self._model
        for tier in ("host", "device"):
            self._add(self.loads.labels(m, tier), stats, f"{tier}_loads")
            self._add(self.evictions.labels(m, tier), stats, f"{tier}_evictions")
        self._add(self.failures.labels(m), stats, "load_failures")

    def _add(self, counter: Counter, stats: CacheStats, field: str) -> None:
        delta = getattr(stats, field) - getattr(self._seen, field)
        if delta > 0:
            counter.inc(delta)
            setattr(self._seen, field, getattr(stats, field))
