"""The operator's own metrics on /metrics (names pinned in docs/contracts.md)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter(
    "infleet_operator_reconciles_total",
    "InferenceService reconciles by result (applied, invalid, error).",
    ["result"],
)
RECONCILE_ERRORS = Counter(
    "infleet_operator_reconcile_errors_total",
    "Reconciles that failed talking to the API server (they are retried).",
)
RECONCILE_DURATION = Histogram(
    "infleet_operator_reconcile_duration_seconds",
    "Wall time of one reconcile: render, apply, status.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
