"""What the policy reads from an InferenceService spec, as plain dataclasses.

The policy core never touches pydantic or Kubernetes objects: `infleet.autoscaler.adapter`
maps the API models onto these, and the simulator builds them directly. Field names follow
the API's (snake_case here).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ScalingSpec:
    min_replicas: int = 1
    max_replicas: int = 10
    # Requests a replica may keep waiting; more and the fleet grows in proportion.
    target_queue_depth: float = 8.0
    # Fraction of a full replica's throughput the fleet is sized for (not in the API:
    # headroom for random routing, bursts and the minutes a new replica takes).
    target_utilization: float = 0.7
    # Stabilization (the HPA's behaviour): scale up only to the lowest recommendation of
    # the last scale_up_stabilization_s, down only to the highest of the last
    # scale_down_stabilization_s; stops flapping on noisy load.
    scale_up_stabilization_s: float = 30.0
    scale_down_stabilization_s: float = 300.0
    scale_to_zero: bool = False
    scale_to_zero_idle_s: float = 600.0  # idle this long before the last replica goes
    # A manual `kubectl scale` of the InferenceService pins the total here.
    replicas_override: int | None = None
    # Averaging windows: the stable one sizes the fleet, the short panic one catches bursts.
    stable_window_s: float = 60.0
    panic_window_s: float = 10.0
    panic_threshold: float = 2.0  # panic when the short window wants this many times ready
    # Rate limits, per minute, relative to the fleet a minute ago (the HPA's policies).
    scale_up_factor: float = 2.0
    scale_up_min_step: int = 4
    scale_down_fraction: float = 0.2
    tolerance: float = 0.1  # ignore recommendations within 10% of the current total
    kv_usage_target: float = 0.85  # mean KV usage above this adds replicas

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError(f"scaling.minReplicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(
                f"scaling.maxReplicas ({self.max_replicas}) must be >= max(minReplicas, 1)"
            )
        if not 0 < self.target_utilization <= 1:
            raise ValueError(f"target utilization must be in (0, 1], got {self.target_utilization}")
        if self.target_queue_depth <= 0:
            raise ValueError(f"scaling.targetQueueDepth must be > 0, got {self.target_queue_depth}")
        if self.min_replicas == 0 and not self.scale_to_zero:
            raise ValueError("scaling.minReplicas 0 needs scaling.scaleToZero enabled")


@dataclass(slots=True)
class SpotSpec:
    enabled: bool = False
    max: int = 0
    preset: str = "gke"
    # A spot pod pending longer than this is a gap that dedicated capacity covers.
    pending_timeout_s: float = 120.0
    # Expected time to replace a lost spot replica (schedule + model load); scales the
    # over-provisioning for the observed interruption rate.
    replacement_s: float = 300.0


@dataclass(slots=True)
class CapacitySpec:
    dedicated_min: int = 0
    spot: SpotSpec = field(default_factory=SpotSpec)


@dataclass(slots=True)
class SloSpec:
    ttft_p95_s: float | None = None
    itl_p95_s: float | None = None
    spot_preemptions_per_replica_hour: float | None = None
    request_preemption_ratio: float | None = None


@dataclass(slots=True)
class PolicySpec:
    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    capacity: CapacitySpec = field(default_factory=CapacitySpec)
    slo: SloSpec = field(default_factory=SloSpec)
