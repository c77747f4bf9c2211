"""Node placement per pool: spot presets, GPU selection, keeping dedicated pods off spot.

Spot pods always carry the preset's spot selector and toleration; dedicated pods never
carry a spot toleration and, through required node affinity, never land on a node with
the spot label (a spot node without its taint would otherwise take them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infleet.api import InferenceServiceSpec, Toleration
from infleet.operator.errors import SpecError
from infleet.operator.names import Pool


@dataclass(frozen=True, slots=True)
class SpotPreset:
    label: str | None  # node label that marks spot nodes (None: custom)
    value: str | None
    gpu_product_label: str  # node label holding the GPU model name

    def selector(self) -> dict[str, str]:
        return {self.label: self.value} if self.label and self.value else {}

    def toleration(self) -> list[dict[str, Any]]:
        if not (self.label and self.value):
            return []
        return [
            {"key": self.label, "operator": "Equal", "value": self.value, "effect": "NoSchedule"}
        ]


NVIDIA_PRODUCT = "nvidia.com/gpu.product"  # set by NVIDIA GPU feature discovery
PRESETS: dict[str, SpotPreset] = {
    "gke": SpotPreset("cloud.google.com/gke-spot", "true", "cloud.google.com/gke-accelerator"),
    "eks": SpotPreset("eks.amazonaws.com/capacityType", "SPOT", NVIDIA_PRODUCT),
    "karpenter": SpotPreset("karpenter.sh/capacity-type", "spot", NVIDIA_PRODUCT),
    "aks": SpotPreset("kubernetes.azure.com/scalesetpriority", "spot", NVIDIA_PRODUCT),
    "custom": SpotPreset(None, None, NVIDIA_PRODUCT),
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True, slots=True)
class Placement:
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    affinity: dict[str, Any] | None


def _tolerations(items: list[Toleration]) -> list[dict[str, Any]]:
    return [t.to_wire() for t in items]


def spot_markers(spec: InferenceServiceSpec) -> dict[str, str]:
    """Labels that identify a spot node: the preset's, or the custom nodeSelector."""
    spot = spec.capacity.spot
    return {**PRESETS[spot.preset].selector(), **spot.node_selector}


def _avoid(markers: dict[str, str]) -> dict[str, Any] | None:
    # A node is spot when it has every marker, so avoiding spot means lacking any one:
    # one NotIn term per marker (terms are ORed).
    if not markers:
        return None
    terms = [
        {"matchExpressions": [{"key": k, "operator": "NotIn", "values": [v]}]}
        for k, v in markers.items()
    ]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
    }


def tolerates_spot(spec: InferenceServiceSpec, toleration: dict[str, Any]) -> bool:
    """Whether a toleration (wire form) would let a pod onto this spec's spot nodes."""
    spot_keys = {t.get("key") for t in PRESETS[spec.capacity.spot.preset].toleration()}
    spot_keys |= {t.key for t in spec.capacity.spot.tolerations}
    key, operator = toleration.get("key"), toleration.get("operator", "Equal")
    return (key is None and operator == "Exists") or key in spot_keys


def _check_dedicated(spec: InferenceServiceSpec) -> None:
    for i, t in enumerate(spec.capacity.dedicated.tolerations):
        if tolerates_spot(spec, t.to_wire()):
            raise SpecError(
                f"capacity.dedicated.tolerations[{i}]",
                "tolerates the spot taint; dedicated pods must never land on spot nodes",
            )


def placement(spec: InferenceServiceSpec, pool: Pool) -> Placement:
    spot = spec.capacity.spot
    preset = PRESETS[spot.preset]
    gpu: dict[str, str] = {}
    if spec.resources.gpu_product:
        gpu = {preset.gpu_product_label: spec.resources.gpu_product}
    base_tolerations = [GPU_TOLERATION] if spec.resources.gpus else []
    if pool == "spot":
        return Placement(
            node_selector={**preset.selector(), **spot.node_selector, **gpu},
            tolerations=[*base_tolerations, *preset.toleration(), *_tolerations(spot.tolerations)],
            affinity=spot.affinity,
        )
    dedicated = spec.capacity.dedicated
    _check_dedicated(spec)
    return Placement(
        node_selector={**dedicated.node_selector, **gpu},
        tolerations=[*base_tolerations, *_tolerations(dedicated.tolerations)],
        affinity=_avoid(spot_markers(spec)),
    )
