"""LoRAAdapter: a tenant's adapter served on top of an InferenceService's base model.

A contract only for now: the model and CRD exist so the adapter controller (a later
issue) and users build against one shape; no controller reconciles it yet.
"""

from __future__ import annotations

from typing import Any, Literal

from infleet.api.base import CrdModel, field
from infleet.api.status import Condition

KIND = "LoRAAdapter"
PLURAL = "loraadapters"
SHORT_NAMES = ["lora"]
ADAPTER_URI_PATTERN = r"^(pvc|hf|s3|https)://.+$"


class LoRAAdapterSpec(CrdModel):
    """The adapter and the service that serves it."""

    uri: str = field(
        description="Where the adapter is: pvc://CLAIM/path, hf://org/adapter, "
        "s3://bucket/path or https://host/file.",
        pattern=ADAPTER_URI_PATTERN,
    )
    inference_service: str = field(
        description="Name of the InferenceService (same namespace) whose base model it adapts.",
        min_length=1,
        max_length=253,
    )
    rank: int = field(
        ge=1, le=512, description="Adapter rank; must fit the service's engine.lora.maxRank."
    )


class LoRAAdapterStatus(CrdModel):
    """What the adapter controller observed."""

    observed_generation: int | None = field(
        None, description="metadata.generation last reconciled."
    )
    conditions: list[Condition] = field(
        default_factory=list,
        description="Ready (loaded on every replica) and Degraded.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


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
