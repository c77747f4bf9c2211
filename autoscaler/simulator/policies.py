"""The policies a simulation can run: ours, and the baselines it is measured against.

`infleet` and `spot-only` call `infleet.autoscaler.policy.decide`, the function the
operator's timer calls; the baselines reimplement the HPA's documented algorithm
(ratio of metric to target, 10% tolerance, 300 s scale-down stabilization, scale-up by
at most max(100%, 4 pods) per period) on the signal each is named after.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

from infleet.autoscaler.policy import Decision, PolicyState, decide
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.view import Observation

POLICY_NAMES = ("static-peak", "hpa-utilization", "queue-dedicated", "spot-only", "infleet")


class SimPolicy(Protocol):
    period_s: float

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        """(dedicated, spot) replicas for the pool Deployments."""
        ...


class StaticPolicy:
    def __init__(self, replicas: int) -> None:
        self.replicas, self.period_s = replicas, 60.0

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        return self.replicas, 0


class HpaPolicy:
    """An HPA (or KEDA, which drives one) on one metric, dedicated replicas only."""

    def __init__(
        self,
        metric: Callable[[Observation, float], float],
        target_per_replica: float,
        min_replicas: int,
        max_replicas: int,
        period_s: float,
        stabilization_s: float = 300.0,
    ) -> None:
        self.metric, self.target = metric, target_per_replica
        self.min, self.max, self.period_s = min_replicas, max_replicas, period_s
        self.stabilization_s = stabilization_s
        self.current: int | None = None  # the Deployment's replicas, once seen
        self.recommendations: list[tuple[float, int]] = []

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        ready = obs.ready()
        if self.current is None:
            self.current = max(self.min, len(obs.pods))
        rec = self.current
        if ready:
            ratio = self.metric(obs, utilization) / ready / self.target
            if abs(ratio - 1.0) > 0.1:
                rec = math.ceil(ready * ratio - 1e-9)
        now = obs.now
        self.recommendations = [
            (t, r) for t, r in self.recommendations if t > now - self.stabilization_s
        ]
        self.recommendations.append((now, rec))
        desired = rec
        if rec < self.current:
            desired = min(self.current, max(r for _, r in self.recommendations))
        desired = min(desired, max(2 * self.current, self.current + 4))
        self.current = max(self.min, min(self.max, desired))
        return self.current, 0


class InfleetPolicy:
    """Our policy, exactly as the operator runs it."""

    def __init__(self, spec: PolicySpec, period_s: float = 10.0, spot_only: bool = False):
        self.spec, self.period_s, self.spot_only = spec, period_s, spot_only
        self.state = PolicyState()
        self.last: Decision | None = None

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        self.last = decide(self.spec, obs, self.state)
        self.state = self.last.state
        if self.spot_only:
            return 0, self.last.spot
        return self.last.dedicated, self.last.spot


def _spot_only_spec(spec: PolicySpec) -> PolicySpec:
    """Everything on spot, over-provisioned by the interruption rate, no fallback."""
    spot = dataclasses.replace(
        spec.capacity.spot,
        enabled=True,
        max=spec.scaling.max_replicas,
        pending_timeout_s=float("inf"),
    )
    capacity = dataclasses.replace(spec.capacity, dedicated_min=0, spot=spot)
    slo = dataclasses.replace(spec.slo, spot_preemptions_per_replica_hour=None)
    return dataclasses.replace(spec, capacity=capacity, slo=slo)


def make_policy(name: str, spec: PolicySpec, peak_replicas: int) -> SimPolicy:
    scaling = spec.scaling
    if name == "static-peak":
        return StaticPolicy(peak_replicas)
    if name == "hpa-utilization":
        # DCGM GPU utilization, target 70%: a GPU that decodes anything reads ~100%.
        return HpaPolicy(
            lambda obs, util: util * obs.ready(),
            0.7,
            scaling.min_replicas or 1,
            scaling.max_replicas,
            15.0,
        )
    if name == "queue-dedicated":
        # KEDA's Prometheus scaler on the engines' queue (vllm:num_requests_waiting) at
        # the same targetQueueDepth as ours, polled every 30 s, dedicated only.
        return HpaPolicy(
            lambda obs, util: sum(r.waiting for r in obs.replicas),
            scaling.target_queue_depth,
            scaling.min_replicas or 1,
            scaling.max_replicas,
            30.0,
        )
    if name == "spot-only":
        return InfleetPolicy(_spot_only_spec(spec), spot_only=True)
    if name == "infleet":
        return InfleetPolicy(spec)
    raise ValueError(f"--policy {name!r} is not one of: {', '.join(POLICY_NAMES)}")
