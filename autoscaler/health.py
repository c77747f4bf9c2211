"""Whether the autoscaler can see a service: failures of metrics reads, and the pure
decision of the InferenceService's `MetricsUnavailable` condition.

A NetworkPolicy, a ServiceMonitor that Prometheus does not select, a Prometheus outage:
each leaves the policy without samples. The policy holds the fleet (blind is not idle);
this says so where people look, with the reason and the last error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

CONDITION = "MetricsUnavailable"


@dataclass(frozen=True, slots=True)
class MetricsFailure:
    """One failed read: a pod's /metrics, or a Prometheus query."""

    source: str  # "scrape" or "prometheus"
    target: str  # the pod, or the Prometheus URL
    reason: str  # CamelCase: ConnectError, Timeout, HTTPError, Rejected, TooLarge, BadMetrics
    message: str
    permanent: bool = False  # a 4xx other than 408/429: retrying will not help
    since: float | None = None  # when this target started failing (None: just now)


@dataclass(frozen=True, slots=True)
class ConditionState:
    """A metav1.Condition's decided part (the operator adds the transition time)."""

    type: str
    status: bool
    reason: str
    message: str


def _first(failures: Iterable[MetricsFailure]) -> str:
    failure = next(iter(failures), None)
    return "" if failure is None else f"; last error: {failure.target}: {failure.message}"[:300]


def metrics_condition(
    blind_s: float,
    serving: int,
    unknown: int,
    failures: list[MetricsFailure],
    now: float,
    grace_s: float,
) -> ConditionState:
    """`MetricsUnavailable` for one service: True when no replica has reported for the
    grace period, when an endpoint rejects the reads for good (a 4xx), or when some
    replicas have failed for the grace period; False otherwise."""
    rejected = [f for f in failures if f.permanent]
    lasting = [f for f in failures if f.since is not None and now - f.since >= grace_s]
    if serving and blind_s >= grace_s:
        # "since" a fixed time, not "for N s": the message (and so the status) stays the
        # same while the blackout lasts, instead of a status write every decision.
        since = datetime.fromtimestamp(now - blind_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = (
            f"no replica's metrics since {since}: the fleet is held at its last size "
            "and grows only on the service's TTFT" + _first(failures)
        )
        return ConditionState(CONDITION, True, "NoReplicaMetrics", message)
    if rejected:
        codes = sorted({f.message.split(":")[0] for f in rejected})
        message = (
            f"{len(rejected)} metrics endpoints reject the autoscaler ({', '.join(codes)}); "
            "not retried until the pod changes" + _first(rejected)
        )
        return ConditionState(CONDITION, True, "MetricsEndpointRejected", message)
    if unknown and lasting:
        message = (
            f"{unknown} of {serving} replicas unreadable for {grace_s:.0f}s or more: they "
            "are held, never counted as idle" + _first(lasting)
        )
        return ConditionState(CONDITION, True, "ReplicasUnreadable", message)
    return ConditionState(
        CONDITION, False, "MetricsAvailable", f"{serving - unknown} of {serving} replicas read"
    )
