"""In-memory views (kopf indices) of each InferenceService's Deployments, Service and
pods, kept current by kopf's watches.

The child watch computes a parent's status from these instead of reading every child
from the API server on every child event, and the autoscale timer reads a service's pods
from them instead of listing pods on every tick (at 1,000 services that was 100 pod
lists a second against the API server). Only what status and the autoscaler read is
kept, so memory stays small at 1,000 services.
"""

from __future__ import annotations

from typing import Any

import kopf

from infleet.autoscaler.kube_view import pod_view
from infleet.operator.names import MANAGED_BY, SERVICE_LABEL

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, InferenceService name)
CHILD_SELECTOR = {MANAGED_BY: "infleet", SERVICE_LABEL: kopf.PRESENT}


@kopf.index("apps", "v1", "deployments", labels=CHILD_SELECTOR)
def service_deployments(
    body: kopf.Body, namespace: str, name: str, labels: kopf.Labels, **_: Any
) -> dict[Key, Obj]:
    meta = {"name": name, "generation": body.metadata.get("generation"), "labels": dict(labels)}
    view = {"metadata": meta, "spec": {"replicas": body.spec.get("replicas", 1)}}
    return {(namespace, labels[SERVICE_LABEL]): {**view, "status": body.get("status") or {}}}


@kopf.index("", "v1", "services", labels=CHILD_SELECTOR)
def service_fronts(
    body: kopf.Body, namespace: str, name: str, labels: kopf.Labels, **_: Any
) -> dict[Key, Obj]:
    view = {"metadata": {"name": name}, "status": body.get("status") or {}}
    return {(namespace, labels[SERVICE_LABEL]): view}


@kopf.index("", "v1", "pods", labels=CHILD_SELECTOR)
def service_pods(namespace: str, body: kopf.Body, labels: kopf.Labels, **_: Any) -> dict[Key, Obj]:
    return {(namespace, labels[SERVICE_LABEL]): pod_view(dict(body))}


def snapshot(index: kopf.Index, key: Key) -> list[Obj]:
    """The values under `key`. Safe from a handler thread: kopf's loop writes the index,
    and list() copies a store's values in one step under the interpreter lock."""
    return list(index.get(key, ()))
