"""The generated CRD schemas, shared by the API tests."""

from __future__ import annotations

from functools import cache
from typing import Any

from infleet.api.crds import inference_service_crd, lora_adapter_crd


def _root(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@cache
def isvc_root() -> dict[str, Any]:
    return _root(inference_service_crd())


@cache
def lora_root() -> dict[str, Any]:
    return _root(lora_adapter_crd())


def isvc_spec_schema() -> dict[str, Any]:
    return isvc_root()["properties"]["spec"]
