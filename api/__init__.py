"""CRD models: the contract between tenants, the operator and the autoscaler."""

from infleet.api.engine import EngineSpec
from infleet.api.inference_service import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    InferenceService,
    InferenceServiceSpec,
    ResourcesSpec,
)
from infleet.api.lora_adapter import LoRAAdapter, LoRAAdapterSpec
from infleet.api.model import ModelCache, ModelSpec, SecretRef
from infleet.api.placement import CapacitySpec, DedicatedPool, SpotPool, Toleration
from infleet.api.pod_template import PodTemplate
from infleet.api.router import HoldQueue, RouterSpec, TenantLimitOverride, TenantLimits
from infleet.api.scaling import ScalingSpec, SloSpec
from infleet.api.status import Condition, InferenceServiceStatus, ScalingDecision

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "CapacitySpec",
    "Condition",
    "DedicatedPool",
    "EngineSpec",
    "HoldQueue",
    "InferenceService",
    "InferenceServiceSpec",
    "InferenceServiceStatus",
    "LoRAAdapter",
    "LoRAAdapterSpec",
    "ModelCache",
    "ModelSpec",
    "PodTemplate",
    "ResourcesSpec",
    "RouterSpec",
    "ScalingDecision",
    "ScalingSpec",
    "SecretRef",
    "SloSpec",
    "SpotPool",
    "TenantLimitOverride",
    "TenantLimits",
    "Toleration",
]
