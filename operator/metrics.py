"""The operator's own metrics on /metrics (names pinned in docs/contracts.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "infleet_operator_reconciles_total",
    "InferenceService reconciles by result (applied, invalid, error).",
    ["result"],
)
RECONCILE_ERRORS = Counter(
    "infleet_operator_reconcile_errors_total",
    "Reconciles that failed (the API server erred or did not answer); each is retried "
    "with a per-service backoff.",
)
RECONCILE_DURATION = Histogram(
    "infleet_operator_reconcile_duration_seconds",
    "Wall time of one reconcile: render, apply, prune, autoscale, status.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
API_ERRORS = Counter(
    "infleet_operator_api_errors_total",
    "Kubernetes API requests that failed: timeout, unreachable, server_error (5xx), "
    "throttled (429).",
    ["reason"],
)
LEADER = Gauge(
    "infleet_operator_leader",
    "1 while this replica holds the leader lease (and reconciles), else 0.",
)
