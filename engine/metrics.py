"""The engine's Prometheus metrics (names pinned in docs/contracts.md).

Counters and histograms, not ratios, so PromQL can rate them. Each engine owns its own
registry (several engines can live in one test process). The engine thread reports into
this object; the HTTP server only renders the registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from infleet.engine.messages import LoRAStats
from infleet.lora.cache import CacheStats
from infleet.lora.metrics import LoRAMetrics

_P = "infleet:"
# Latency buckets spanning a fast GPU decode (ms) to a loaded CPU replica (minutes).
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160)
_ITL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10)
_E2E_BUCKETS = (0.1, 0.3, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 240, 480, 960)


class EngineMetrics:
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(_P + name, doc, labels, registry=r).labels(model_name)

        def counter(name: str, doc: str) -> Counter:
            return Counter(_P + name, doc, labels, registry=r).labels(model_name)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(_P + name, doc, labels, buckets=buckets, registry=r).labels(model_name)

        self.waiting = gauge("num_requests_waiting", "Requests queued for admission.")
        self.running = gauge("num_requests_running", "Requests in the running batch.")
        self.kv_usage = gauge("kv_cache_usage_perc", "Fraction of KV blocks held (0..1).")
        self.preemptions = counter("num_preemptions_total", "Sequences preempted (recompute).")
        self.prefix_queries = counter("prefix_cache_queries_total", "Prompt tokens looked up.")
        self.prefix_hits = counter("prefix_cache_hits_total", "Prompt tokens found cached.")
        self.prompt_tokens = counter("prompt_tokens_total", "Prompt tokens prefilled.")
        self.generation_tokens = counter("generation_tokens_total", "Tokens generated.")
        self.ttft = histogram(
            "time_to_first_token_seconds", "Arrival to first token.", _TTFT_BUCKETS
        )
        self.itl = histogram(
            "inter_token_latency_seconds", "Gap between output tokens.", _ITL_BUCKETS
        )
        self.e2e = histogram("e2e_request_latency_seconds", "Arrival to finish.", _E2E_BUCKETS)
        self._success = Counter(
            _P + "request_success_total",
            "Finished requests by reason (stop, length, abort, error).",
            [*labels, "finished_reason"],
            registry=r,
        )
        # Speculative decoding (engine/spec/): vLLM's spec_decode_* names and meanings.
        self.spec_enabled = gauge(
            "spec_decode_enabled", "1 while the load switch lets speculation run, else 0."
        )
        self.spec_drafts = counter("spec_decode_num_drafts", "Sequences that verified drafts.")
        self.spec_draft_tokens = counter("spec_decode_num_draft_tokens", "Draft tokens proposed.")
        self.spec_accepted = counter(
            "spec_decode_num_accepted_tokens", "Draft tokens accepted by verification."
        )
        self._spec_per_pos = Counter(
            _P + "spec_decode_num_accepted_tokens_per_pos",
            "Draft tokens accepted, by position in the draft (0 = first).",
            [*labels, "position"],
            registry=r,
        )
        self._model_name = model_name
        # The KV tiers' metrics, recorded in the core's process (CoreStats.tier_metrics).
        self.core_text = b""
        self._seen = {"preemptions": 0, "queries": 0, "hits": 0, "drafts": 0, "draft_tokens": 0,
                      "accepted": 0}  # fmt: skip
        self._seen_per_pos: list[int] = []
        self._lora: LoRAMetrics | None = None  # registered with the first LoRA stats

    def record_step(
        self,
        *,
        waiting: int,
        running: int,
        kv_usage: float,
        preemptions: int,
        prefix_queries: int,
        prefix_hits: int,
    ) -> None:
        """Engine-wide state after a step; the last three are running totals."""
        self.waiting.set(waiting)
        self.running.set(running)
        self.kv_usage.set(kv_usage)
        for key, total, counter in (
            ("preemptions", preemptions, self.preemptions),
            ("queries", prefix_queries, self.prefix_queries),
            ("hits", prefix_hits, self.prefix_hits),
        ):
            if total > self._seen[key]:
                counter.inc(total - self._seen[key])
                self._seen[key] = total

    def record_spec(
        self,
        *,
        enabled: int,
        drafts: int,
        draft_tokens: int,
        accepted: int,
        accepted_per_pos: list[int],
    ) -> None:
        """Speculation's running totals after a step (enabled -1: not configured)."""
        if enabled < 0:
            return
        self.spec_enabled.set(enabled)
        for key, total, counter in (
            ("drafts", drafts, self.spec_drafts),
            ("draft_tokens", draft_tokens, self.spec_draft_tokens),
            ("accepted", accepted, self.spec_accepted),
        ):
            if total > self._seen[key]:
                counter.inc(total - self._seen[key])
                self._seen[key] = total
        seen = self._seen_per_pos
        seen += [0] * (len(accepted_per_pos) - len(seen))
        for pos, total in enumerate(accepted_per_pos):
            if total > seen[pos]:
                self._spec_per_pos.labels(self._model_name, str(pos)).inc(total - seen[pos])
                seen[pos] = total

    def record_lora(self, s: LoRAStats) -> None:
        """The core's adapter state after a step (names in lora/metrics.py)."""
        if self._lora is None:
            self._lora = LoRAMetrics(self.registry, self._model_name, s.max_loras)
        totals = CacheStats(
            s.host_loads, s.device_loads, s.host_evictions, s.device_evictions, s.load_failures
        )
        self._lora.record(totals, s.running, s.waiting)

    def record_finish(self, reason: str, e2e_seconds: float) -> None:
        self._success.labels(self._model_name, reason).inc()
        self.e2e.observe(e2e_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry) + self.core_text
