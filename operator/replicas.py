"""How many replicas each pool runs: a pure function of spec and status.

The autoscaler decides per-pool counts and records them in status.lastScalingDecision;
until it has decided (or when spec.replicas pins the total), `capacity` splits the total:
dedicated first up to capacity.dedicated.min, then spot up to capacity.spot.max, and any
remainder back on dedicated (spot is never required to exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from infleet.api import InferenceService, InferenceServiceSpec
from infleet.operator.names import Pool


@dataclass(frozen=True, slots=True)
class PoolReplicas:
    dedicated: int
    spot: int
    why: str = field(default="", compare=False)  # where the counts come from, for status

    @property
    def total(self) -> int:
        return self.dedicated + self.spot


def active_pools(spec: InferenceServiceSpec) -> tuple[Pool, ...]:
    """The pools that get a Deployment: dedicated always (the split's fallback when spot is
    short), spot while `capacity.spot.enabled`; a pool that leaves the spec is pruned."""
    return ("dedicated", "spot") if spec.capacity.spot.enabled else ("dedicated",)


def clamp_total(spec: InferenceServiceSpec, total: int) -> int:
    return max(spec.scaling.min_replicas, min(spec.scaling.max_replicas, total))


def split_total(spec: InferenceServiceSpec, total: int) -> PoolReplicas:
    """Split `total` replicas between the pools as `capacity` says."""
    spot_pool = spec.capacity.spot
    if not spot_pool.enabled:
        return PoolReplicas(dedicated=total, spot=0)
    dedicated = min(total, spec.capacity.dedicated.min)
    spot_cap = spec.scaling.max_replicas if spot_pool.max is None else spot_pool.max
    spot = min(total - dedicated, spot_cap)
    return PoolReplicas(dedicated=total - spot, spot=spot)


def _decision_fits(spec: InferenceServiceSpec, decision: PoolReplicas, total: int | None) -> bool:
    spot_cap = (
        spec.scaling.max_replicas if spec.capacity.spot.max is None else spec.capacity.spot.max
    )
    if decision.spot and not spec.capacity.spot.enabled:
        return False
    if decision.spot > spot_cap or clamp_total(spec, decision.total) != decision.total:
        return False
    return total is None or decision.total == total


def plan_replicas(isvc: InferenceService) -> PoolReplicas:
    """Per-pool replicas: the autoscaler's decision when it still fits the spec, else a split."""
    spec = isvc.spec
    pinned = None if spec.replicas is None else clamp_total(spec, spec.replicas)
    last = isvc.status.last_scaling_decision
    if last is not None:
        decision = PoolReplicas(
            last.dedicated, last.spot, f"the autoscaler's decision ({last.reason})"
        )
        if _decision_fits(spec, decision, pinned):
            return decision
    if pinned is None:
        return replace(
            split_total(spec, spec.scaling.min_replicas),
            why=f"scaling.minReplicas is {spec.scaling.min_replicas}",
        )
    return replace(split_total(spec, pinned), why=f"spec.replicas is {spec.replicas}")
