"""What a LoRA service needs before its pods can start, when it admits other namespaces:
one API key per admitted tenant (its admin key is operator/admin_secret.py's).

A service that admits only its own namespace stays as it was (unauthenticated, as every
service without LoRA tenancy). One that admits others is authenticated: each tenant
namespace in `{own} ∪ allowedNamespaces` gets a key in its own Secret `<service>-api-key`
(data key `api-key`, created once, never rotated by the operator: delete the Secret to
rotate), and the service's ConfigMap `<service>-api-keys` is the engine's keys file
(api/tenants.py's format: tenant -> [sha256:HEX]), each namespace a tenant. Only hashes
leave the tenants' namespaces. Namespaces its `namespaceSelector` matches are tenants too:
they are listed on each reconcile, and a namespace event (operator/lora_watches.py)
reconciles such services, so a namespace that comes to match gets a key and one that stops
matching loses its hash (its key no longer opens the service) within a reconcile.
"""

from __future__ import annotations

import logging
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from infleet.api import InferenceService
from infleet.api.tenants import hash_key
from infleet.operator.kube import Kube
from infleet.operator.lora_kube import LoRAKube
from infleet.operator.lora_names import KEYS_FILE, api_key_secret_name, api_keys_name
from infleet.operator.names import child_labels

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def tenants(
    isvc: InferenceService, namespaces: dict[str, dict[str, str]] | None = None
) -> list[str]:
    """The namespaces that get an API key (none: the service is not authenticated).
    `namespaces`: every namespace's labels, for the service's namespaceSelector."""
    lora = isvc.spec.engine.lora
    if not lora.admits_others():
        return []
    selected = set()
    if lora.namespace_selector is not None:
        selected = {n for n, labels in (namespaces or {}).items()
                    if lora.namespace_selector.matches(labels)}  # fmt: skip
    return sorted({isvc.namespace, *lora.allowed_namespaces, *selected})


def namespace_labels(kube: Kube) -> dict[str, dict[str, str]]:
    """Every namespace's labels (the operator may list namespaces: a cluster-scoped read)."""
    found = kube.read(kube.core.list_namespace) or {}
    return {
        item["metadata"]["name"]: dict(item["metadata"].get("labels") or {})
        for item in found.get("items") or []
        if not item["metadata"].get("deletionTimestamp")
    }


def render_api_keys(service: Obj, hashes: dict[str, list[str]]) -> Obj:
    """The keys file ConfigMap; `hashes` is tenant -> its key hashes (sha256:HEX)."""
    meta = service["metadata"]
    owner = {"apiVersion": service["apiVersion"], "kind": "InferenceService",
             "name": meta["name"], "uid": meta["uid"], "controller": True}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": api_keys_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": child_labels(meta["name"]),
            "ownerReferences": [owner],
        },
        "data": {KEYS_FILE: yaml.safe_dump(hashes, sort_keys=True)},
    }


def prepare(kube: Kube, service: Obj, isvc: InferenceService) -> None:
    """The tenants' keys and their hashes, before the pods need them."""
    lkube = LoRAKube(kube)
    hashes: dict[str, list[str]] = {}
    selector = isvc.spec.engine.lora.namespace_selector
    for tenant in tenants(isvc, namespace_labels(kube) if selector is not None else None):
        try:
            key = lkube.tenant_key(tenant, api_key_secret_name(isvc.name))
        except ApiException as err:
            if err.status != 404:
                raise
            log.info("%s/%s: tenant namespace %s does not exist", isvc.namespace, isvc.name, tenant)
            continue
        hashes[tenant] = [hash_key(key)]
    if hashes:
        kube.apply(render_api_keys(service, hashes))
