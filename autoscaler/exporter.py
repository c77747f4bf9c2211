"""The autoscaler's series (names and labels pinned in docs/contracts.md), which the
chart's alerts read: replicas desired and ready per pool, spot interruptions and spot
exposure as counters (PromQL rates them into interruptions per replica-hour and burn
rates), each spec's objectives, so one static rule set serves every service, and how
well the autoscaler sees each service (failed metrics reads, replicas it cannot read,
seconds it has been blind)."""

from __future__ import annotations

import contextlib

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from infleet.api import SloSpec
from infleet.autoscaler.health import MetricsFailure
from infleet.autoscaler.policy import Decision
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.view import POOLS, Observation

SLO_LABELS = tuple(SloSpec.model_fields)  # the `slo` label values: the API's field names
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
        self.failures = Counter(
            "infleet_autoscaler_metrics_failures_total",
            "Failed metrics reads (a pod's /metrics or a Prometheus query), by source and reason.",
            (*_SERVICE, "source", "reason"),
            registry=registry,
        )
        self._failure_labels: set[tuple[str, str, str, str]] = set()
        self.unknown = gauge(
            "infleet_autoscaler_unknown_replicas",
            "Serving replicas whose metrics could not be read this decision.",
            _SERVICE,
        )
        self.blind = gauge(
            "infleet_autoscaler_blind_seconds",
            "Seconds since any replica of the service was read (0 while they are).",
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
        for slo in SLO_LABELS:
            self.objective.labels(namespace, name, slo).set(getattr(spec.slo, slo))
        self.unknown.labels(namespace, name).set(decision.load.unknown)
        self.blind.labels(namespace, name).set(decision.load.blind_s)

    def record_failures(self, namespace: str, name: str, failures: list[MetricsFailure]) -> None:
        """Count this decision's failed reads (call it every decision: an empty list
        still creates the service's series, at 0 for the reasons seen before)."""
        for failure in failures:
            labels = (namespace, name, failure.source, failure.reason)
            self.failures.labels(*labels).inc()
            self._failure_labels.add(labels)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted InferenceService."""
        for pool in POOLS:
            for metric in (self.desired, self.ready, self.interruptions, self.spot_seconds):
                self._remove(metric, namespace, name, pool)
        for slo in SLO_LABELS:
            self._remove(self.objective, namespace, name, slo)
        for metric in (self.target_queue_depth, self.unknown, self.blind):
            self._remove(metric, namespace, name)
        for labels in [x for x in self._failure_labels if x[:2] == (namespace, name)]:
            self._remove(self.failures, *labels)
            self._failure_labels.discard(labels)

    @staticmethod
    def _remove(metric: Gauge | Counter, *labels: str) -> None:
        with contextlib.suppress(KeyError):  # never recorded: nothing to remove
            metric.remove(*labels)
