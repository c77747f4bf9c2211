"""What the operator has seen of each InferenceService, kept current by kopf's watches.

kopf indices hold the services, their labelled children (Deployments, Services,
ConfigMaps, PDBs, the router's RBAC objects), their pods, their routers' pods and the
names of the LoRAAdapters aimed at them, so a reconcile starts from memory instead of reading
every object from the API server (at 1,000 services, reads per event or per tick were
most of the operator's traffic). Both replicas keep them, so a standby that takes over
starts warm. kopf runs no handler before every index has its initial listing, so the
first handler call (operator/watches.py) hands the indices over and marks them complete.

A watch shows the operator's own writes a moment later; until it does, what was written
stands in for the cached objects it replaced (operator/own_writes.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from infleet.api import GROUP, PLURAL, VERSION
from infleet.api.lora_adapter import LoRAAdapter
from infleet.autoscaler.kube_view import pod_view
from infleet.operator.names import MANAGED_BY, ROUTER_LABEL, SERVICE_LABEL
from infleet.operator.own_writes import OwnWrites
from infleet.operator.pod_trouble import engine_refusal, fetch_trouble

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, InferenceService name)
CHILD_SELECTOR = {MANAGED_BY: "infleet", SERVICE_LABEL: kopf.PRESENT}
# (group, version, plural, kind) of each child kind the operator watches and can prune.
CHILD_KINDS = (
    ("apps", "v1", "deployments", "Deployment"),
    ("", "v1", "services", "Service"),
    ("", "v1", "configmaps", "ConfigMap"),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    ("", "v1", "serviceaccounts", "ServiceAccount"),  # the router's (operator/router.py)
    ("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    # A pool whose replicas span nodes (operator/lws.py); watched only where the CRD exists.
    ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", "LeaderWorkerSet"),
)
# The router's pods: not the service's replicas, so they carry ROUTER_LABEL instead.
ROUTER_POD_SELECTOR = {MANAGED_BY: "infleet", ROUTER_LABEL: kopf.PRESENT}
PARENTS, PODS = "inference_services", "service_pods"
ROUTER_PODS, ADAPTERS = "router_pods", "service_adapters"
CHILD_INDICES = tuple(f"service_{plural}" for _, _, plural, _ in CHILD_KINDS)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one reconcile starts from: the service and its children as last seen."""

    parent: Obj
    children: list[Obj]  # every labelled child of the kinds above
    pods: list[Obj]  # trimmed by autoscaler.kube_view.pod_view
    adapters: list[str] = field(default_factory=list)  # LoRAAdapters aimed at it: names
    router_pods: list[Obj] = field(default_factory=list)  # trimmed by pod_view


def trimmed(body: Mapping[str, Any], kind: str, api_version: str) -> Obj:
    """The object without managedFields (the bulk of it, and nothing the operator reads)."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return {**body, "apiVersion": api_version, "kind": kind, "metadata": meta}


@kopf.index(GROUP, VERSION, PLURAL)
def inference_services(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Key, Obj]:
    return {(namespace, name): trimmed(body, "InferenceService", f"{GROUP}/{VERSION}")}


def _child_indexer(kind: str, api_version: str) -> Any:
    def index(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict[Key, Obj]:
        return {(namespace, labels[SERVICE_LABEL]): trimmed(body, kind, api_version)}

    return index


for (_group, _version, _plural, _kind), _id in zip(CHILD_KINDS, CHILD_INDICES, strict=True):
    _api_version = f"{_group}/{_version}" if _group else _version
    kopf.index(_group, _version, _plural, labels=CHILD_SELECTOR, id=_id)(
        _child_indexer(_kind, _api_version)
    )


@kopf.index("", "v1", "pods", labels=CHILD_SELECTOR)
def service_pods(namespace: str, body: kopf.Body, labels: kopf.Labels, **_: Any) -> dict[Key, Obj]:
    pod = dict(body)
    # The autoscaler's view of the pod, plus why its model fetch fails or its engine refused
    # the model (status reports both).
    view = {**pod_view(pod), "fetchTrouble": fetch_trouble(pod)}
    return {(namespace, labels[SERVICE_LABEL]): {**view, "engineRefusal": engine_refusal(pod)}}


@kopf.index("", "v1", "pods", labels=ROUTER_POD_SELECTOR)
def router_pods(namespace: str, body: kopf.Body, labels: kopf.Labels, **_: Any) -> dict[Key, Obj]:
    # Their /metrics hold the requests the activator holds (the autoscale step reads it).
    return {(namespace, labels[ROUTER_LABEL]): pod_view(dict(body))}


@kopf.index(GROUP, VERSION, "loraadapters")
def service_adapters(body: kopf.Body, **_: Any) -> dict[Key, str]:
    # The router accepts an adapter's served name as `model` (operator/router.py).
    try:
        adapter = LoRAAdapter.model_validate(dict(body))
    except ValidationError:
        return {}  # the adapter controller reports it
    return {adapter.service_key(): adapter.served_name()}


class Cache:
    def __init__(self) -> None:
        self._indices: Mapping[str, Any] = {}
        self.own_writes = OwnWrites()

    def fill(self, indices: Mapping[str, Any]) -> bool:
        """Takes kopf's indices from a handler's kwargs; True the first time."""
        if self._indices:
            return False
        wanted = (PARENTS, PODS, ROUTER_PODS, ADAPTERS, *CHILD_INDICES)
        self._indices = {name: indices[name] for name in wanted}
        return True

    def keys(self) -> list[Key]:
        return list(self._indices.get(PARENTS, {}).keys()) if self._indices else []

    def _values(self, index: str, key: Key) -> list[Obj]:
        # Safe from a worker thread: kopf's loop writes the index, and list() copies a
        # store's values in one step under the interpreter lock.
        return list(self._indices[index].get(key, ()))

    def snapshot(self, key: Key) -> Snapshot | None:
        """None when the service is gone."""
        found = self._values(PARENTS, key)
        if not found:
            self.own_writes.forget(key)
            return None
        parent = self.own_writes.service(key, found[0])
        children = [c for index in CHILD_INDICES for c in self._values(index, key)]
        children = self.own_writes.children(key, children)
        adapters = sorted(self._values(ADAPTERS, key))
        pods, routers = self._values(PODS, key), self._values(ROUTER_PODS, key)
        return Snapshot(parent, children, pods, adapters, routers)
