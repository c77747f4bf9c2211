"""A service's adapter set: the ConfigMap `<service>-lora` every replica reads at start.

One data key per adapter, `<tenant namespace>.<adapter name>` (a namespace has no dot, so
keys never collide), holding the entry (api/lora_set.py) the engines and the router read:
the served name, the store URL and sha256 of the artifact, the tenant. Each adapter's
reconcile adds or removes only its own key with a JSON merge patch, so reconciles of
different adapters never conflict.

The pod template mounts the ConfigMap by name (optional: a service without adapters has
none), so changing the set never changes the template and never restarts a replica;
new pods read the set as it is when they start (operator/lora_pod.py).
"""

from __future__ import annotations

from typing import Any

from infleet.operator.lora_names import set_name
from infleet.operator.names import child_labels

Obj = dict[str, Any]
SET_LABEL = "infleet.io/lora-set"


def entry_key(tenant: str, adapter: str) -> str:
    return f"{tenant}.{adapter}"


def key_of(entry_key_: str) -> tuple[str, str]:
    tenant, _, name = entry_key_.partition(".")
    return tenant, name


def render_set(service: Obj) -> Obj:
    """The empty set ConfigMap, owned by the service (same namespace)."""
    meta = service["metadata"]
    owner = {
        "apiVersion": service.get("apiVersion", "infleet.io/v1alpha1"),
        "kind": "InferenceService",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
    labels = {**child_labels(meta["name"]), SET_LABEL: "true"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": set_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner],
        },
        "data": {},
    }


def is_set(config_map: Obj) -> bool:
    return (config_map["metadata"].get("labels") or {}).get(SET_LABEL) == "true"
