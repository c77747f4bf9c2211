"""The autoscaler's series (names and labels pinned in docs/contracts.md), which the
chart's alerts read: replicas desired and ready per pool, spot interruptions and spot
exposure as counters (PromQL rates them into interruptions per replica-hour and burn
rates), and each spec's objectives, so one static rule set serves every service."""

from __future__ import annotations

import contextlib

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from infleet.autoscaler.policy import Decision
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.view import POOLS, Observation

SLO_LABELS = {  # `slo` label value -> SloSpec field
    "ttft_p95_seconds": "ttft_p95_s",
    "itl_p95_seconds": "itl_p95_s",
    "spot_preemptions_per_replica_hour": "spot_preemptions_per_replica_hour",
    "request_preemption_ratio": "request_preemption_ratio",
}
_POOL = ("namespace", "inferenceservice", "pool")
_SERVICE = ("namespace", "inferenceservice")


class AutoscalerMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            return Gauge(name, doc, labels, registry=registry)

        self.desired = gauge(
            "infleet_autoscaler_desired_replicas", "Replicas the autoscaler decided.", _POOL
        )
        self.ready = gauge(
            "infleet_autoscaler_ready_replicas", "Replicas passing readiness.", _POOL
        )
        self.interruptions = Counter(
            "infleet_spot_interruptions_total",
            "Spot replicas interrupted (node reclaimed).",
            _POOL,
            registry=registry,
        )
        self.spot_seconds = Counter(
            "infleet_spot_replica_seconds_total",
            "Seconds of ready spot replicas: the exposure interruptions are rated against.",
            _POOL,
            registry=registry,
        )
        self.objective = gauge(
            "infleet_slo_objective", "Each SLO's objective from the spec.", (*_SERVICE, "slo")
        )
        self.target_queue_depth = gauge(
            "infleet_autoscaler_target_queue_depth",
            "spec.scaling.targetQueueDepth: waiting requests per replica.",
            _SERVICE,
        )

    def record(
        self, namespace: str, name: str, spec: PolicySpec, obs: Observation, decision: Decision
    ) -> None:
        for pool in POOLS:
            self.desired.labels(namespace, name, pool).set(getattr(decision, pool))
            self.ready.labels(namespace, name, pool).set(obs.ready(pool))
        # Touch the counters so their series exist (at 0) before the first interruption.
        self.interruptions.labels(namespace, name, "spot").inc(decision.new_interruptions)
        self.spot_seconds.labels(namespace, name, "spot").inc(decision.spot_replica_seconds)
        self.target_queue_depth.labels(namespace, name).set(spec.scaling.target_queue_depth)
        for slo, field in SLO_LABELS.items():
            value = getattr(spec.slo, field)
            if value is None:
                self._remove(self.objective, namespace, name, slo)
            else:
                self.objective.labels(namespace, name, slo).set(value)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted InferenceService."""
        for pool in POOLS:
            for metric in (self.desired, self.ready, self.interruptions, self.spot_seconds):
                self._remove(metric, namespace, name, pool)
        for slo in SLO_LABELS:
            self._remove(self.objective, namespace, name, slo)
        self._remove(self.target_queue_depth, namespace, name)

    @staticmethod
    def _remove(metric: Gauge | Counter, *labels: str) -> None:
        with contextlib.suppress(KeyError):  # never recorded: nothing to remove
            metric.remove(*labels)
