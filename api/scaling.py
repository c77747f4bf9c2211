"""How many replicas run (scaling) and what service level they must keep (slo)."""

from __future__ import annotations

from typing import ClassVar

from infleet.api.base import CrdModel, Rule, field


class ScaleToZero(CrdModel):
    """Scaling to zero replicas when idle (needs scaling.minReplicas: 0)."""

    enabled: bool = field(False, description="Allow zero replicas after idleSeconds of no load.")
    idle_seconds: int = field(
        600, ge=0, description="Seconds without requests before the last replica goes."
    )


class ScalingSpec(CrdModel):
    """Replica bounds and the queue-depth target the autoscaler keeps."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.minReplicas <= self.maxReplicas",
            "scaling.minReplicas must be less than or equal to scaling.maxReplicas",
            lambda s: s.min_replicas <= s.max_replicas,
        ),
        Rule(
            "(self.minReplicas == 0) == self.scaleToZero.enabled",
            "scaling.scaleToZero.enabled must be true exactly when scaling.minReplicas is 0",
            lambda s: (s.min_replicas == 0) == s.scale_to_zero.enabled,
        ),
    )

    min_replicas: int = field(1, ge=0, description="Fewest replicas (0 only with scaleToZero).")
    max_replicas: int = field(4, ge=1, description="Most replicas, dedicated and spot together.")
    target_queue_depth: int = field(
        8, ge=1, description="Waiting requests per replica the autoscaler aims for."
    )
    scale_up_stabilization_window_seconds: int = field(
        30, ge=0, le=3600, description="Seconds of sustained load before scaling up."
    )
    scale_down_stabilization_window_seconds: int = field(
        300, ge=0, le=3600, description="Seconds of sustained low load before scaling down."
    )
    scale_to_zero: ScaleToZero = field(
        default_factory=ScaleToZero, description="Scaling to zero replicas when idle."
    )


class SloSpec(CrdModel):
    """Service-level objectives; alerts and the autoscaler read them (infleet_slo_objective)."""

    ttft_p95_seconds: float = field(
        2.0, gt=0, description="95th percentile time to first token, in seconds."
    )
    itl_p95_seconds: float = field(
        0.15, gt=0, description="95th percentile inter-token latency, in seconds."
    )
    spot_preemptions_per_replica_hour: float = field(
        0.1,
        ge=0,
        description="Budget of spot interruptions per spot replica-hour; past it the "
        "autoscaler shifts replicas to dedicated.",
    )
    request_preemption_ratio: float = field(
        0.01,
        ge=0,
        le=1,
        description="Budget of the fraction of requests preempted (KV evicted and recomputed).",
    )
