"""spec.template: a partial PodTemplateSpec merged into every pod the operator renders.

In the style of KServe's LLMInferenceService `template` and Dynamo's `extraPodSpec`, but
limited to the fields a platform customises (docs/operator.md#pod-customisation): a field
outside this list is refused by the schema, naming it, instead of being dropped silently.
Lists merge by their Kubernetes merge keys (containers, volumes and env by name,
volumeMounts by mountPath), maps key by key; what the operator owns wins
(operator/pod_template.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

from infleet.api.base import CrdModel, field
from infleet.api.placement import Toleration


class NamedObject(CrdModel):
    """A Kubernetes object of a list merged by name (a Container, a Volume); its other
    fields are passed through as written and validated by the API server."""

    model_config = CrdModel.model_config | ConfigDict(extra="allow")

    name: str = field(description="The merge key.", min_length=1, max_length=253)


class LocalObjectReference(CrdModel):
    """A reference to an object in the same namespace (e.g. an image pull Secret)."""

    name: str = field(description="The object's name.", min_length=1, max_length=253)


class TemplateMetadata(CrdModel):
    """Labels and annotations added to every pod."""

    labels: dict[str, str] = field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = field(default_factory=dict, description="Extra pod annotations.")


class PodSpecOverlay(CrdModel):
    """The pod fields a template may set; everything else is the operator's."""

    service_account_name: str | None = field(
        None, description="The pods' service account (e.g. one bound to workload identity)."
    )
    automount_service_account_token: bool | None = field(
        None, description="Mount the service account's API token (default: false)."
    )
    image_pull_secrets: list[LocalObjectReference] = field(
        default_factory=list, description="Secrets for pulling private images."
    )
    priority_class_name: str | None = field(None, description="The pods' PriorityClass.")
    runtime_class_name: str | None = field(
        None, description="The pods' RuntimeClass (e.g. nvidia, kata)."
    )
    security_context: dict[str, Any] | None = field(
        None,
        description="A core/v1 PodSecurityContext merged over the restricted default "
        "(runAsNonRoot, the engine's runAsUser, RuntimeDefault seccomp).",
    )
    volumes: list[NamedObject] = field(
        default_factory=list, description="Extra volumes (core/v1 Volume), merged by name."
    )
    containers: list[NamedObject] = field(
        default_factory=list,
        description="Extra containers (sidecars), merged by name; one named `engine` adds "
        "env, envFrom, volumeMounts, resources or securityContext to the engine container.",
    )
    init_containers: list[NamedObject] = field(
        default_factory=list, description="Extra init containers, run after the model fetch."
    )
    node_selector: dict[str, str] = field(
        default_factory=dict, description="Extra node labels both pools require."
    )
    tolerations: list[Toleration] = field(
        default_factory=list, description="Extra tolerations for both pools."
    )
    affinity: dict[str, Any] | None = field(
        None,
        description="A core/v1 Affinity (pod affinity, preferred node affinity); required "
        "node affinity is the pools' own (capacity.*).",
    )


class PodTemplate(CrdModel):
    """A partial PodTemplateSpec merged into every rendered pod."""

    metadata: TemplateMetadata = field(
        default_factory=TemplateMetadata, description="Pod labels and annotations."
    )
    spec: PodSpecOverlay = field(default_factory=PodSpecOverlay, description="Pod fields.")
