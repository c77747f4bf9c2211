"""Status written by the operator (and the autoscaler's last decision). Never spec."""

from __future__ import annotations

from typing import Literal

from infleet.api.base import CrdModel, field

ConditionType = Literal["Ready", "Progressing", "Degraded"]


class Condition(CrdModel):
    """A metav1.Condition: the state of one aspect of the service."""

    type: str = field(description="Ready, Progressing or Degraded.")
    status: Literal["True", "False", "Unknown"] = field(description="True, False or Unknown.")
    reason: str = field(description="CamelCase reason for the last transition.")
    message: str = field("", description="Human-readable detail.")
    observed_generation: int | None = field(
        None, description="metadata.generation this condition was computed from."
    )
    last_transition_time: str = field(
        description="RFC 3339 time the status last changed (not when it was last checked)."
    )


class PoolStatus(CrdModel):
    """Replica counts of one capacity pool."""

    desired: int = field(0, description="Replicas the pool should run.")
    ready: int = field(0, description="Replicas passing their readiness probe.")


class PoolsStatus(CrdModel):
    """Replica counts per pool."""

    dedicated: PoolStatus = field(default_factory=PoolStatus, description="Dedicated pool.")
    spot: PoolStatus = field(default_factory=PoolStatus, description="Spot pool.")


class ScalingDecision(CrdModel):
    """The autoscaler's latest decision; the operator sizes the pools from it."""

    time: str = field(description="RFC 3339 time of the decision.")
    dedicated: int = field(ge=0, description="Replicas decided for the dedicated pool.")
    spot: int = field(ge=0, description="Replicas decided for the spot pool.")
    reason: str = field(description="CamelCase reason, e.g. QueueAboveTarget.")
    message: str = field("", description="Human-readable detail.")


class InferenceServiceStatus(CrdModel):
    """What the operator observed."""

    observed_generation: int | None = field(
        None, description="metadata.generation of the spec the operator last reconciled."
    )
    conditions: list[Condition] = field(
        default_factory=list,
        description="Ready, Progressing and Degraded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int = field(0, description="Replicas that exist, all pools (scale subresource).")
    ready_replicas: int = field(0, description="Ready replicas, all pools.")
    selector: str | None = field(
        None, description="Label selector of the pods (scale subresource)."
    )
    pools: PoolsStatus = field(default_factory=PoolsStatus, description="Replicas per pool.")
    url: str | None = field(None, description="OpenAI-compatible base URL, ending in /v1.")
    last_scaling_decision: ScalingDecision | None = field(
        None, description="The autoscaler's latest decision."
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)
