"""The service's admin key Secret (operator/admin_key.py says who gets one): created once
with a random key, owned by the service (deleted with it), never rotated by a reconcile
(delete the Secret to rotate; the engines pick the new key up when they restart).

Reads and creates on the operator's fenced client; the key is returned to the caller (the
adapter controller calls the engines with it) and never logged or written elsewhere.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from kubernetes.client.exceptions import ApiException

from infleet.api import GROUP, VERSION
from infleet.operator.admin_key import ADMIN_KEY, admin_secret_name, legacy_admin_secret_name
from infleet.operator.kube import Kube
from infleet.operator.names import child_labels

Obj = dict[str, Any]


def _read_key(kube: Kube, namespace: str, name: str) -> str | None:
    """The Secret's admin key, decoded; None when the Secret or its key is missing."""
    found = kube.read(kube.core.read_namespaced_secret, name, namespace)
    value = ((found or {}).get("data") or {}).get(ADMIN_KEY)
    return base64.b64decode(value).decode() if value else None


def admin_key(kube: Kube, service: Obj, create: bool) -> str | None:
    """The service's admin key, creating its Secret when `create` and missing; None when
    it does not exist and is not to be created. A key in the legacy `<service>-lora-admin`
    Secret is the one the new Secret gets: engines started before keep working."""
    meta = service["metadata"]
    ns, name = meta["namespace"], admin_secret_name(meta["name"])
    key = _read_key(kube, ns, name)
    if key is not None:
        return key
    legacy = _read_key(kube, ns, legacy_admin_secret_name(meta["name"]))
    if not create:
        return legacy
    owner = {
        "apiVersion": service.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": "InferenceService",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
    key = legacy or secrets.token_urlsafe(32)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": child_labels(meta["name"]),
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "stringData": {ADMIN_KEY: key},
    }
    try:
        kube.call(kube.core.create_namespaced_secret, ns, secret, fenced=True)
    except ApiException as err:
        if err.status != 409:
            raise
        return _read_key(kube, ns, name)  # another writer was first: theirs
    return key
