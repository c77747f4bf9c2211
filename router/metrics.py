"""The router's Prometheus metrics (prefix `infleet:router_`, docs/contracts.md).

Counters, not ratios: `rate(infleet:router_prefix_hits_total) /
rate(infleet:router_prefix_lookups_total)` is the share of requests sent to a replica
believed to hold some of their prefix. `infleet:router_held_requests` is the demand
waiting for a replica: what the autoscaler reads to scale from zero.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from infleet.router.picker import REASONS

_P = "infleet:router_"


class RouterMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.decisions = Counter(
            _P + "decisions_total",
            "Routing decisions by what decided them.",
            ["reason"],
            registry=r,
        )
        for reason in REASONS:
            self.decisions.labels(reason)
        self.prefix_lookups = Counter(
            _P + "prefix_lookups_total", "Requests with at least one prefix key.", registry=r
        )
        self.prefix_hits = Counter(
            _P + "prefix_hits_total",
            "Requests sent to a replica believed to hold part of their prefix.",
            registry=r,
        )
        self.retries = Counter(
            _P + "retries_total",
            "Requests retried on another replica after a refusal before any token.",
            ["reason"],
            registry=r,
        )
        self.held = Gauge(
            _P + "held_requests", "Requests held now, waiting for a ready replica.", registry=r
        )
        self.hold_outcomes = Counter(
            _P + "hold_outcomes_total",
            "Requests that waited for a ready replica, by outcome (released, timeout, full).",
            ["outcome"],
            registry=r,
        )
        self.tenant_requests = Counter(
            _P + "tenant_requests_total",
            "Requests per tenant by admission outcome (admitted, rate_limited, "
            "concurrency_limited).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.ready_replicas = Gauge(
            _P + "ready_replicas", "Replicas the router may send requests to.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
