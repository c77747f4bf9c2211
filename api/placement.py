"""Where replicas run: the dedicated pool, the spot pool and the cloud presets for spot."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from infleet.api.base import CrdModel, Rule, field

SpotPreset = Literal["gke", "eks", "karpenter", "aks", "custom"]


class Toleration(CrdModel):
    """A Kubernetes toleration (core/v1 Toleration)."""

    key: str | None = field(None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] = field("Equal", description="Exists or Equal.")
    value: str | None = field(None, description="Taint value matched with operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = field(
        None, description="Taint effect to match; empty matches every effect."
    )
    toleration_seconds: int | None = field(
        None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class DedicatedPool(CrdModel):
    """On-demand (non-spot) GPU capacity: never preempted by the cloud."""

    min: int = field(
        1,
        ge=0,
        description="Replicas that always run on dedicated nodes; replicas above this may go "
        "to spot when spot is enabled. 0 with spot enabled means spot only.",
    )
    node_selector: dict[str, str] = field(
        default_factory=dict, description="Extra node labels dedicated pods require."
    )
    tolerations: list[Toleration] = field(
        default_factory=list, description="Extra tolerations for dedicated pods."
    )


class SpotPool(CrdModel):
    """Spot / preemptible GPU capacity: cheaper, reclaimed by the cloud at short notice."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.preset != 'custom' || (has(self.nodeSelector) && size(self.nodeSelector) > 0) "
            "|| has(self.affinity)",
            "capacity.spot.preset custom needs capacity.spot.nodeSelector or "
            "capacity.spot.affinity to find spot nodes",
            lambda s: s.preset != "custom" or bool(s.node_selector) or s.affinity is not None,
        ),
    )

    enabled: bool = field(False, description="Run replicas above capacity.dedicated.min on spot.")
    max: int | None = field(
        None,
        ge=0,
        description="Most replicas on spot at once; unset means up to scaling.maxReplicas.",
    )
    preset: SpotPreset = field(
        "gke",
        description="How spot nodes are labelled and tainted: gke (cloud.google.com/gke-spot), "
        "eks (eks.amazonaws.com/capacityType=SPOT), karpenter (karpenter.sh/capacity-type=spot), "
        "aks (kubernetes.azure.com/scalesetpriority=spot), or custom (nodeSelector, "
        "tolerations and affinity below).",
    )
    node_selector: dict[str, str] = field(
        default_factory=dict,
        description="Node labels of spot nodes (custom preset), or extra labels for a preset.",
    )
    tolerations: list[Toleration] = field(
        default_factory=list,
        description="Tolerations for the spot taint (custom preset), or extra ones for a preset.",
    )
    affinity: dict[str, Any] | None = field(
        None, description="A core/v1 Affinity for spot pods (custom preset); merged as given."
    )


class CapacitySpec(CrdModel):
    """The mix of dedicated and spot capacity."""

    dedicated: DedicatedPool = field(
        default_factory=DedicatedPool, description="The dedicated (on-demand) pool."
    )
    spot: SpotPool = field(default_factory=SpotPool, description="The spot pool.")
