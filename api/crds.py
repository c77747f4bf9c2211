"""`infleet crds`: the CustomResourceDefinitions, generated from the pydantic models.

The committed `crds/*.yaml` are this module's output; a test fails when they drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from infleet.api import inference_service as isvc
from infleet.api import lora_adapter as lora
from infleet.api.schema import structural

HEADER = "# Generated from api/ by `infleet crds --output-dir crds`. Do not edit by hand.\n"
CATEGORIES = ["infleet"]
READY = '.status.conditions[?(@.type=="Ready")].status'


def _root_schema(spec: type[BaseModel], status: type[BaseModel], doc: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": doc,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "infleet.io/v1alpha1."},
            "kind": {"type": "string", "description": "The object's kind."},
            "metadata": {"type": "object"},
            "spec": structural(spec),
            "status": structural(status, defaults=False),
        },
    }


def _crd(kind: str, plural: str, short: list[str], version: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{isvc.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "infleet"},
        },
        "spec": {
            "group": isvc.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": CATEGORIES,
            },
            "versions": [{"name": isvc.VERSION, "served": True, "storage": True, **version}],
        },
    }


def _column(name: str, path: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "jsonPath": path, **extra}


def inference_service_crd() -> dict[str, Any]:
    doc = "InferenceService serves one model from a fleet of engine replicas on GPU nodes."
    return _crd(
        isvc.KIND,
        isvc.PLURAL,
        isvc.SHORT_NAMES,
        {
            "schema": {
                "openAPIV3Schema": _root_schema(
                    isvc.InferenceServiceSpec, isvc.InferenceServiceStatus, doc
                )
            },
            "subresources": {
                "status": {},
                "scale": {
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.selector",
                },
            },
            "additionalPrinterColumns": [
                _column("Ready", READY),
                _column("Engine", ".spec.engine.kind"),
                _column("Model", ".spec.model.uri"),
                _column("Replicas", ".status.replicas", "integer"),
                _column("Dedicated", ".status.pools.dedicated.ready", "integer", priority=1),
                _column("Spot", ".status.pools.spot.ready", "integer", priority=1),
                _column("URL", ".status.url", priority=1),
                _column("Age", ".metadata.creationTimestamp", "date"),
            ],
        },
    )


def lora_adapter_crd() -> dict[str, Any]:
    doc = "LoRAAdapter serves a LoRA adapter on an InferenceService's base model."
    return _crd(
        lora.KIND,
        lora.PLURAL,
        lora.SHORT_NAMES,
        {
            "schema": {
                "openAPIV3Schema": _root_schema(lora.LoRAAdapterSpec, lora.LoRAAdapterStatus, doc)
            },
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                _column("Ready", READY),
                _column("Service", ".status.service"),
                _column("Model", ".status.servedName"),
                _column("Loaded", ".status.loadedReplicas", "integer"),
                _column("Replicas", ".status.replicas", "integer"),
                _column("Reason", '.status.conditions[?(@.type=="Ready")].reason'),
                _column("Rank", ".status.rank", "integer", priority=1),
                _column("Checksum", ".status.checksum", priority=1),
                _column("Age", ".metadata.creationTimestamp", "date"),
            ],
        },
    )


def all_crds() -> list[dict[str, Any]]:
    return [inference_service_crd(), lora_adapter_crd()]


def to_yaml(crd: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=100)


def file_name(crd: dict[str, Any]) -> str:
    return f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infleet crds", description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, help="write one file per CRD here")
    args = parser.parse_args(argv)
    crds = all_crds()
    if args.output_dir is None:
        sys.stdout.write("---\n".join(to_yaml(c) for c in crds))
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for crd in crds:
        (args.output_dir / file_name(crd)).write_text(to_yaml(crd))
        print(args.output_dir / file_name(crd))
    return 0
