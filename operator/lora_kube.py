"""The adapter controller's Kubernetes calls, on the operator's fenced, bounded client.

Reads: a tenant's credentials Secret (decoded in memory, returned to the caller, never
logged or stored). Writes: the adapter's status, the service's set ConfigMap (one key per
merge patch), the tenants' API key Secrets (created once). The service's admin key is
operator/admin_secret.py's.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from kubernetes.client.exceptions import ApiException

from infleet.api import GROUP, VERSION
from infleet.api.lora_adapter import PLURAL
from infleet.operator.kube import MERGE, Kube, as_json
from infleet.operator.lora_names import API_KEY
from infleet.operator.names import FIELD_MANAGER

Obj = dict[str, Any]


class LoRAKube:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def get_adapter(self, namespace: str, name: str) -> Obj | None:
        fn = self.kube.custom.get_namespaced_custom_object
        return self.kube.read(fn, GROUP, VERSION, namespace, PLURAL, name)

    def patch_adapter_status(self, namespace: str, name: str, status: Obj) -> Obj | None:
        fn = self.kube.custom.patch_namespaced_custom_object_status
        try:
            response = self.kube.call(
                fn, GROUP, VERSION, namespace, PLURAL, name, {"status": status},
                fenced=True, _preload_content=False, _content_type=MERGE,
                field_manager=FIELD_MANAGER,
            )  # fmt: skip
        except ApiException as err:
            if err.status == 404:
                return None  # deleted meanwhile: its own reconcile cleans up
            raise
        return as_json(response)

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None when it does not exist."""
        found = self.kube.read(self.kube.core.read_namespaced_secret, name, namespace)
        if found is None:
            return None
        data = found.get("data") or {}
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}

    def patch_set(self, service: Obj, key: str, value: str | None, create: Obj) -> None:
        """Sets (or with None removes) one entry of the set ConfigMap, creating it first
        (`create`: the empty ConfigMap) when it does not exist."""
        meta = service["metadata"]
        ns, name = meta["namespace"], create["metadata"]["name"]
        body = {"data": {key: value}}
        patch = self.kube.core.patch_namespaced_config_map
        kw = {"fenced": True, "_content_type": MERGE, "field_manager": FIELD_MANAGER}
        try:
            self.kube.call(patch, name, ns, body, **kw)
            return
        except ApiException as err:
            if err.status != 404:
                raise
        if value is None:
            return  # no set, nothing to remove
        full = {**create, "data": {key: value}}
        self.kube.call(self.kube.core.create_namespaced_config_map, ns, full, fenced=True)

    def tenant_key(self, namespace: str, name: str) -> str:
        """A tenant's API key from its Secret `name` in its namespace, created (with a new
        random key) when missing. It is the tenant's: no owner, the operator never updates
        or deletes it."""
        data = self.secret_data(namespace, name)
        if data is not None and data.get(API_KEY):
            return data[API_KEY]
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "infleet"}},
            "type": "Opaque",
            "stringData": {API_KEY: secrets.token_urlsafe(32)},
        }  # fmt: skip
        try:
            self.kube.call(self.kube.core.create_namespaced_secret, namespace, secret, fenced=True)
        except ApiException as err:
            if err.status != 409:
                raise
        return (self.secret_data(namespace, name) or {}).get(API_KEY, "")
