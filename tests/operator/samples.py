"""Small InferenceService builders for the operator tests."""

from __future__ import annotations

import copy
from typing import Any

from infleet.api import InferenceService

MIXES: dict[str, dict[str, Any]] = {
    "dedicated-only": {"scaling": {"minReplicas": 2, "maxReplicas": 4}},
    "spot-only": {
        "scaling": {"minReplicas": 3, "maxReplicas": 4},
        "capacity": {"dedicated": {"min": 0}, "spot": {"enabled": True}},
    },
    "mixed": {
        "scaling": {"minReplicas": 3, "maxReplicas": 6},
        "capacity": {"dedicated": {"min": 1}, "spot": {"enabled": True, "max": 4}},
    },
}
MODELS = {
    "infleet": "builtin:smollm2-135m-instruct",
    "vllm": "hf://meta-llama/Llama-3.1-8B-Instruct",
    "sglang": "s3://models/qwen2.5-7b",
    "tgi": "pvc://models/mistral-7b",
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def body(name: str = "chat", namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    """A service; its router off unless `router` says otherwise (the engines' children are
    what most tests look at; tests/operator/test_router_render.py turns it on)."""
    spec = merge({"model": {"uri": MODELS["infleet"]}, "router": {"enabled": False}}, spec)
    return {
        "apiVersion": "infleet.io/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-1", "generation": 3},
        "spec": spec,
    }


def isvc(**spec: Any) -> InferenceService:
    return InferenceService.model_validate(body(**spec))


def engine_isvc(kind: str, mix: str, **extra: Any) -> InferenceService:
    spec = merge(MIXES[mix], {"model": {"uri": MODELS[kind]}, "engine": {"kind": kind}})
    return isvc(**merge(spec, extra))
