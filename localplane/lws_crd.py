"""The LeaderWorkerSet CRD (leaderworkerset.x-k8s.io/v1) the local plane serves, so the
operator finds it where it looks (API discovery of the group) and multi-node replicas run
here. Written for the fields LWS >= 0.6 defines, not vendored: the pod templates are left
open (built-in types are not validated here either), the rest is closed."""

from __future__ import annotations

from typing import Any

GROUP, VERSION, PLURAL, KIND = (
    "leaderworkerset.x-k8s.io",
    "v1",
    "leaderworkersets",
    "LeaderWorkerSet",
)

_TEMPLATE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_INT_OR_STRING: dict[str, Any] = {"x-kubernetes-int-or-string": True}

_SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["leaderWorkerTemplate"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 0, "default": 1},
        "startupPolicy": {
            "type": "string",
            "enum": ["LeaderCreated", "LeaderReady"],
            "default": "LeaderCreated",
        },
        "leaderWorkerTemplate": {
            "type": "object",
            "required": ["workerTemplate"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "default": 1},
                "restartPolicy": {
                    "type": "string",
                    "enum": ["RecreateGroupOnPodRestart", "None"],
                    "default": "RecreateGroupOnPodRestart",
                },
                "leaderTemplate": _TEMPLATE,
                "workerTemplate": _TEMPLATE,
            },
        },
        "rolloutStrategy": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["RollingUpdate"], "default": "RollingUpdate"},
                "rollingUpdateConfiguration": {
                    "type": "object",
                    "properties": {"maxSurge": _INT_OR_STRING, "maxUnavailable": _INT_OR_STRING},
                },
            },
        },
    },
}

_STATUS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "replicas": {"type": "integer"},
        "readyReplicas": {"type": "integer"},
        "updatedReplicas": {"type": "integer"},
        "hpaPodSelector": {"type": "string"},
        "conditions": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    },
}

LWS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {
            "kind": KIND,
            "listKind": f"{KIND}List",
            "plural": PLURAL,
            "singular": "leaderworkerset",
            "shortNames": ["lws"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": _SPEC,
                            "status": _STATUS,
                        },
                    }
                },
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.hpaPodSelector",
                    },
                },
                "additionalPrinterColumns": [
                    {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
                    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }
        ],
    },
}
