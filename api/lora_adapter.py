"""LoRAAdapter: a tenant's adapter served on top of an InferenceService's base model.

The tenant is the adapter's namespace. It may name a service in another namespace
(`inferenceServiceRef.namespace`) when that service admits it (`engine.lora`); the
operator's adapter controller (operator/lora_controller.py) fetches, checks and delivers
it, and reports here where it is loaded.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from infleet.api.base import CrdModel, Rule, field
from infleet.api.model import NAME_PATTERN, SecretRef
from infleet.api.status import Condition

KIND = "LoRAAdapter"
PLURAL = "loraadapters"
SHORT_NAMES = ["lora"]
ADAPTER_URI_PATTERN = r"^(pvc|hf|s3|https|http)://.+$"
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"

# Degraded reasons of the admission and fetch checks (the contract: docs/lora-onboarding.md).
REASONS = (
    "NamespaceNotAllowed",
    "RankTooLarge",
    "BaseModelMismatch",
    "ArtifactUnreachable",
    "InvalidAdapter",
    "NameConflict",
)


class ServiceRef(CrdModel):
    """The InferenceService an adapter attaches to."""

    name: str = field(description="The InferenceService's name.", min_length=1, max_length=253)
    namespace: str | None = field(
        None,
        description="Its namespace (default: the adapter's own).",
        pattern=NAME_PATTERN,
        max_length=63,
    )


class LoRAAdapterSpec(CrdModel):
    """The adapter and the service that serves it."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.inferenceService) != has(self.inferenceServiceRef)",
            "set exactly one of inferenceService (same namespace) and inferenceServiceRef",
            lambda s: (s.inference_service is None) != (s.inference_service_ref is None),
        ),
    )

    uri: str = field(
        description="Where the adapter is: a directory URL holding adapter_config.json and "
        "adapter_model.safetensors, or a .tar.gz of them: https://, in-cluster http://, "
        "hf://org/adapter, s3://bucket/path, pvc://CLAIM/path.",
        pattern=ADAPTER_URI_PATTERN,
    )
    inference_service: str | None = field(
        None,
        description="Name of the InferenceService in the adapter's own namespace "
        "(or use inferenceServiceRef).",
        min_length=1,
        max_length=253,
    )
    inference_service_ref: ServiceRef | None = field(
        None,
        description="The InferenceService, possibly in another namespace that admits this one.",
    )
    credentials_secret_ref: SecretRef | None = field(
        None,
        description="A Secret in the adapter's namespace with the fetch's credentials "
        "(HF_TOKEN; AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; Authorization for http(s)). "
        "Read by the operator, never copied.",
    )
    served_name: str | None = field(
        None,
        description="The `model` clients send (default: metadata.name); unique per service.",
        pattern=SERVED_NAME_PATTERN,
        max_length=253,
    )
    rank: int | None = field(
        None,
        ge=1,
        le=512,
        description="Adapter rank (default: read from the adapter); must fit the service's "
        "engine.lora.maxRank either way.",
    )


class LoRAAdapterStatus(CrdModel):
    """What the adapter controller observed."""

    observed_generation: int | None = field(
        None, description="metadata.generation last reconciled."
    )
    conditions: list[Condition] = field(
        default_factory=list,
        description="Ready (loaded on every replica) and Degraded (NamespaceNotAllowed, "
        "RankTooLarge, BaseModelMismatch, ArtifactUnreachable, InvalidAdapter, NameConflict).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    service: str | None = field(None, description="The service it attaches to, NAMESPACE/NAME.")
    served_name: str | None = field(None, description="The `model` clients send.")
    rank: int | None = field(None, description="The adapter's rank, as read from it.")
    replicas: int | None = field(None, description="Ready replicas of the service.")
    loaded_replicas: int | None = field(
        None, description="Ready replicas whose engine lists the adapter."
    )
    checksum: str | None = field(
        None, description="sha256:HEX of the fetched artifact (the adapter's files)."
    )
    size: int | None = field(None, description="Bytes of the fetched artifact.")


class LoRAAdapter(CrdModel):
    """A whole LoRAAdapter object."""

    model_config = CrdModel.model_config | {"extra": "ignore"}

    api_version: Literal["infleet.io/v1alpha1"] = field(
        "infleet.io/v1alpha1", description="infleet.io/v1alpha1.", alias="apiVersion"
    )
    kind: Literal["LoRAAdapter"] = field(KIND, description="LoRAAdapter.")
    metadata: dict[str, Any] = field(default_factory=dict, description="Object metadata.")
    spec: LoRAAdapterSpec = field(description="The desired state.")
    status: LoRAAdapterStatus = field(
        default_factory=LoRAAdapterStatus, description="The observed state."
    )

    @property
    def namespace(self) -> str:
        return self.metadata.get("namespace") or "default"

    @property
    def name(self) -> str:
        return self.metadata["name"]

    def service_key(self) -> tuple[str, str]:
        """(namespace, name) of the InferenceService it attaches to."""
        ref = self.spec.inference_service_ref
        if ref is not None:
            return ref.namespace or self.namespace, ref.name
        assert self.spec.inference_service is not None  # the rule requires one
        return self.namespace, self.spec.inference_service

    def served_name(self) -> str:
        return self.spec.served_name or self.name
