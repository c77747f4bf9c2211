"""A service's adapter set: the ConfigMap `<service>-lora` every replica reads at start.

One data key per adapter, `<tenant namespace>.<adapter name>` (a namespace has no dot, so
keys never collide), holding the entry an engine needs: the served name, the store URL
and sha256 of the artifact, the tenant. Each adapter's reconcile adds or removes only its
own key with a JSON merge patch, so reconciles of different adapters never conflict.

The pod template mounts the ConfigMap by name (optional: a service without adapters has
none), so changing the set never changes the template and never restarts a replica;
new pods read the set as it is when they start (operator/lora_pod.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Entry:
    served_name: str
    url: str
    sha256: str  # hex
    tenant: str

    def to_json(self) -> str:
        body = {"name": self.served_name, "url": self.url, "sha256": self.sha256}
        return json.dumps(body | {"tenant": self.tenant}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Entry:
        raw = json.loads(text)
        return cls(raw["name"], raw["url"], raw["sha256"], raw["tenant"])


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


def entries(config_map: Obj | None) -> dict[str, Entry]:
    """Key -> entry of a live set ConfigMap (entries that do not parse are skipped)."""
    out = {}
    for key, text in ((config_map or {}).get("data") or {}).items():
        try:
            out[key] = Entry.from_json(text)
        except (ValueError, KeyError, TypeError):
            continue
    return out


def is_set(config_map: Obj) -> bool:
    return (config_map["metadata"].get("labels") or {}).get(SET_LABEL) == "true"
