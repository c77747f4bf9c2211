"""InferenceService: one model served by a fleet of engine replicas."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from infleet.api.base import CrdModel, Quantity, Rule, field
from infleet.api.engine import EngineSpec
from infleet.api.model import ModelSpec
from infleet.api.placement import CapacitySpec
from infleet.api.pod_template import PodTemplate
from infleet.api.router import RouterSpec
from infleet.api.scaling import ScalingSpec, SloSpec
from infleet.api.status import InferenceServiceStatus

GROUP = "infleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SHORT_NAMES = ["infsvc", "infs"]


class ResourcesSpec(CrdModel):
    """What one replica needs."""

    gpus: int = field(1, ge=0, le=64, description="GPUs per replica (nvidia.com/gpu).")
    gpu_product: str | None = field(
        None,
        description="GPU model the node must have, matched against its GPU label "
        "(GKE: cloud.google.com/gke-accelerator; else nvidia.com/gpu.product), "
        "e.g. nvidia-l4 or NVIDIA-H100-80GB-HBM3.",
    )
    gpus_per_node: int | None = field(
        None,
        ge=1,
        le=64,
        description="GPUs one node gives a replica (default: gpus, one pod). Fewer than gpus: "
        "the replica is a LeaderWorkerSet group of gpus / gpusPerNode pods, one per node.",
    )
    cpu: Quantity = field("2", description="CPU request and limit per replica.")
    memory: Quantity = field("8Gi", description="Memory request and limit per replica.")


class InferenceServiceSpec(CrdModel):
    """The desired state of an InferenceService."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.capacity.dedicated.min <= self.scaling.maxReplicas",
            "capacity.dedicated.min must be less than or equal to scaling.maxReplicas",
            lambda s: s.capacity.dedicated.min <= s.scaling.max_replicas,
        ),
        Rule(
            "self.engine.parallelism.tensor * self.engine.parallelism.pipeline <= "
            "(self.resources.gpus > 0 ? self.resources.gpus : 1)",
            "engine.parallelism.tensor * engine.parallelism.pipeline must not exceed "
            "resources.gpus (GPUs per replica)",
            lambda s: (
                s.engine.parallelism.tensor * s.engine.parallelism.pipeline
                <= max(s.resources.gpus, 1)
            ),
        ),
        Rule(
            "!has(self.resources.gpusPerNode) || (self.resources.gpus > 0 && "
            "self.resources.gpus % self.resources.gpusPerNode == 0)",
            "resources.gpusPerNode must divide resources.gpus (the replica's pods each have "
            "gpusPerNode GPUs)",
            lambda s: (
                s.resources.gpus_per_node is None
                or (s.resources.gpus > 0 and s.resources.gpus % s.resources.gpus_per_node == 0)
            ),
        ),
        Rule(
            "self.capacity.spot.enabled || self.capacity.dedicated.min > 0 || "
            "self.scaling.minReplicas == 0",
            "capacity.dedicated.min is 0 and spot is off: enable capacity.spot or "
            "raise capacity.dedicated.min",
            lambda s: (
                s.capacity.spot.enabled
                or s.capacity.dedicated.min > 0
                or s.scaling.min_replicas == 0
            ),
        ),
    )

    model: ModelSpec = field(description="The model to serve.")
    engine: EngineSpec = field(default_factory=EngineSpec, description="The serving engine.")
    resources: ResourcesSpec = field(
        default_factory=ResourcesSpec, description="Per-replica resources."
    )
    scaling: ScalingSpec = field(default_factory=ScalingSpec, description="Replica bounds.")
    capacity: CapacitySpec = field(
        default_factory=CapacitySpec, description="Dedicated and spot capacity."
    )
    slo: SloSpec = field(default_factory=SloSpec, description="Service-level objectives.")
    router: RouterSpec = field(
        default_factory=RouterSpec,
        description="The request router: prefix/adapter/load-aware routing, per-tenant "
        "limits, holding requests while no replica is ready.",
    )
    template: PodTemplate = field(
        default_factory=PodTemplate,
        description="A partial PodTemplateSpec merged into every pod: labels, annotations, "
        "security context, service account, pull secrets, priority and runtime classes, "
        "volumes, sidecars, and env/volumeMounts/resources of the container named engine.",
    )
    replicas: int | None = field(
        None,
        ge=0,
        description="Manual override of the total replica count (the scale subresource: "
        "kubectl scale). Unset lets the autoscaler decide; when set, the autoscaler holds "
        "this total, clamped to scaling.minReplicas..maxReplicas, and only splits it "
        "between the pools.",
    )


class InferenceService(CrdModel):
    """A whole InferenceService object as the API server returns it."""

    model_config = CrdModel.model_config | {"extra": "ignore"}

    api_version: Literal["infleet.io/v1alpha1"] = field(
        API_VERSION, description="infleet.io/v1alpha1.", alias="apiVersion"
    )
    kind: Literal["InferenceService"] = field(KIND, description="InferenceService.")
    metadata: dict[str, Any] = field(default_factory=dict, description="Object metadata.")
    spec: InferenceServiceSpec = field(description="The desired state.")
    status: InferenceServiceStatus = field(
        default_factory=InferenceServiceStatus, description="The observed state."
    )

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def namespace(self) -> str:
        return self.metadata.get("namespace") or "default"
