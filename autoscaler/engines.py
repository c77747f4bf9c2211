"""Each engine kind's own metric names, mapped onto the policy's one view: the one table
of engine metric names. The operator's per-service PrometheusRule (operator/monitoring.py)
reads its histograms and queue gauge from here, docs/contracts.md lists it (checked by
tests/autoscaler/test_engine_names.py, which also checks the bundled engine exports its
row, and the chart's alerts read only names of it).

Names are the engines' own (checked against their sources and docs):
- infleet: `infleet:*`, vLLM's suffixes (docs/contracts.md).
- vLLM: `vllm:num_requests_waiting|running`, `vllm:kv_cache_usage_perc` (V1; older
  releases export `vllm:gpu_cache_usage_perc`), `vllm:num_preemptions_total`,
  `vllm:request_success_total{finished_reason}`, `vllm:prompt_tokens_total`,
  `vllm:generation_tokens_total`.
- SGLang: `sglang:num_queue_reqs`, `sglang:num_running_reqs`, `sglang:token_usage`,
  `sglang:num_retracted_requests_total` (retraction is SGLang's preemption; older
  releases only had the `sglang:num_retracted_reqs` gauge, which cannot be rated),
  `sglang:num_requests_total`, `sglang:prompt_tokens_total`,
  `sglang:generation_tokens_total`.
- TGI: `tgi_queue_size`, `tgi_batch_current_size`, `tgi_request_success` (exported with or
  without `_total` depending on the metrics crate version); token counts only as the
  sums of its per-request histograms `tgi_request_input_length` and
  `tgi_request_generated_tokens` (a histogram's `_sum` is a counter). TGI exports no KV
  usage and does not preempt, so those stay None.

The prompt and generation token counters give the request shape (mean prompt and output
lengths), on which the policy keys what it learns about capacity.

All values are 0..1 fractions or plain counts: `*_perc` in vLLM is a fraction despite
its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infleet.autoscaler.view import ReplicaMetrics


@dataclass(frozen=True, slots=True)
class EngineMetricNames:
    waiting: tuple[str, ...]
    running: tuple[str, ...]
    kv_usage: tuple[str, ...] = ()
    preemptions_total: tuple[str, ...] = ()
    requests_total: tuple[str, ...] = ()
    prompt_tokens_total: tuple[str, ...] = ()
    generation_tokens_total: tuple[str, ...] = ()
    # The time-to-first-token histogram (the blind policy's fallback evidence, read
    # through Prometheus; the per-service PrometheusRule's p95); TGI has none.
    ttft_histogram: str | None = None
    # The inter-token latency histogram (the PrometheusRule's p95).
    itl_histogram: str | None = None


ENGINE_METRICS: dict[str, EngineMetricNames] = {
    "infleet": EngineMetricNames(
        waiting=("infleet:num_requests_waiting",),
        running=("infleet:num_requests_running",),
        kv_usage=("infleet:kv_cache_usage_perc",),
        preemptions_total=("infleet:num_preemptions_total",),
        requests_total=("infleet:request_success_total",),
        prompt_tokens_total=("infleet:prompt_tokens_total",),
        generation_tokens_total=("infleet:generation_tokens_total",),
        ttft_histogram="infleet:time_to_first_token_seconds",
        itl_histogram="infleet:inter_token_latency_seconds",
    ),
    "vllm": EngineMetricNames(
        waiting=("vllm:num_requests_waiting",),
        running=("vllm:num_requests_running",),
        kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        preemptions_total=("vllm:num_preemptions_total",),
        requests_total=("vllm:request_success_total",),
        prompt_tokens_total=("vllm:prompt_tokens_total",),
        generation_tokens_total=("vllm:generation_tokens_total",),
        ttft_histogram="vllm:time_to_first_token_seconds",
        itl_histogram="vllm:inter_token_latency_seconds",
    ),
    "sglang": EngineMetricNames(
        waiting=("sglang:num_queue_reqs",),
        running=("sglang:num_running_reqs",),
        kv_usage=("sglang:token_usage",),
        preemptions_total=("sglang:num_retracted_requests_total",),
        requests_total=("sglang:num_requests_total",),
        prompt_tokens_total=("sglang:prompt_tokens_total",),
        generation_tokens_total=("sglang:generation_tokens_total",),
        ttft_histogram="sglang:time_to_first_token_seconds",
        itl_histogram="sglang:inter_token_latency_seconds",
    ),
    "tgi": EngineMetricNames(
        waiting=("tgi_queue_size",),
        running=("tgi_batch_current_size",),
        requests_total=("tgi_request_success", "tgi_request_success_total"),
        prompt_tokens_total=("tgi_request_input_length_sum",),
        generation_tokens_total=("tgi_request_generated_tokens_sum",),
        itl_histogram="tgi_request_mean_time_per_token_duration",
    ),
}


def names_for(kind: str) -> EngineMetricNames:
    try:
        return ENGINE_METRICS[kind]
    except KeyError:
        known = ", ".join(sorted(ENGINE_METRICS))
        raise ValueError(f"engine.kind {kind!r} is not one of: {known}") from None


def _first(samples: Mapping[str, float], names: Iterable[str]) -> float | None:
    for name in names:
        if name in samples:
            return samples[name]
    return None


def replica_metrics(kind: str, pod: str, pool: str, samples: Mapping[str, float]) -> ReplicaMetrics:
    """One replica's view from its samples (metric name -> value, summed over labels).

    A replica that exports neither a waiting nor a running series is not an engine of
    this kind (or is misconfigured): that is an error, not a silent zero.
    """
    names = names_for(kind)
    waiting = _first(samples, names.waiting)
    running = _first(samples, names.running)
    if waiting is None and running is None:
        raise ValueError(
            f"pod {pod}: no {kind} queue metrics (expected {names.waiting[0]} "
            f"or {names.running[0]})"
        )
    return ReplicaMetrics(
        pod=pod,
        pool=pool,
        waiting=waiting or 0.0,
        running=running or 0.0,
        **{field: _first(samples, getattr(names, field)) for field in COUNTED},
    )


COUNTED = (  # ReplicaMetrics fields that are None where the engine does not export them
    "kv_usage",
    "preemptions_total",
    "requests_total",
    "prompt_tokens_total",
    "generation_tokens_total",
)
FIELDS = ("waiting", "running", *COUNTED)


def exported_samples(kind: str, **values: float) -> dict[str, float]:
    """The samples an engine of this kind exports for these values (field -> value):
    what the simulator's replicas print, under each signal's first (current) name."""
    names = names_for(kind)
    return {getattr(names, f)[0]: float(v) for f, v in values.items() if getattr(names, f)}
