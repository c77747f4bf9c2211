"""The Kubernetes permissions the operator's code needs, derived from that code.

Three sources: kopf's handler registry (what it watches and patches), the children the
operator server-side applies (create + patch: apply creates when the object is missing), and
kubernetes-client calls in operator/ and autoscaler/. kopf's own internals, which no code of
ours shows, come from operator_permissions.yaml next to this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import kopf
import yaml
from kubernetes import client

from infleet.api import GROUP, PLURAL, InferenceService
from infleet.api.lora_adapter import PLURAL as LORA_PLURAL
from infleet.operator import handlers  # noqa: F401  (importing registers every handler)
from infleet.operator.render import RenderOptions, render_children
from tests.charts.paths import HERE
from tests.conftest import REPO

Need = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)
LEASES = ("coordination.k8s.io", "leases")
VERBS = {"read": "get", "get": "get", "list": "list", "create": "create"}
VERBS |= {"patch": "patch", "replace": "update", "delete": "delete"}
API_GROUPS = {"CoreV1Api": "", "AppsV1Api": "apps", "PolicyV1Api": "policy"}
API_GROUPS |= {"AutoscalingV1Api": "autoscaling", "CoordinationV1Api": "coordination.k8s.io"}
API_GROUPS |= {"NetworkingV1Api": "networking.k8s.io", "BatchV1Api": "batch"}
API_GROUPS |= {"RbacAuthorizationV1Api": "rbac.authorization.k8s.io"}
# A kubernetes-client method, called or passed on (`self.call(self.apps.patch_..., ...)`).
CLIENT_CALL = re.compile(
    r"\.(read|get|list|create|patch|replace|delete)_namespaced_([a-z_]+?)(_status|_scale)?\b"
)
# A cluster-scoped read (`self.core.read_namespace`): the platform policy's namespace labels.
CLUSTER_CALL = re.compile(r"\.(read|get|list)_(namespace|node)\b")
CLUSTER_SCOPED = {("", "namespaces"), ("", "nodes")}
SAMPLE = {
    "metadata": {"name": "chat", "namespace": "team-a", "uid": "0", "generation": 1},
    "spec": {
        "model": {"uri": "builtin:smollm2-135m-instruct"},
        "capacity": {"spot": {"enabled": True, "preset": "gke"}},
    },
}


def plural(kind_or_snake: str) -> str:
    word = kind_or_snake.replace("_", "").lower()
    if word.endswith("y"):
        return word[:-1] + "ies"
    return word + ("es" if word.endswith("s") else "s")


def expand(group: str, resource: str, verbs: Iterable[str]) -> set[Need]:
    return {(group, resource, verb) for verb in verbs}


def kopf_handler_needs() -> set[Need]:
    registry = kopf.get_default_registry()
    needs: set[Need] = set()
    for kind, verbs in (
        ("_changing", ("list", "watch", "patch")),
        ("_watching", ("list", "watch")),
    ):
        for handler in getattr(registry, kind).get_all_handlers():
            group, resource = handler.selector.group or "", handler.selector.any_name
            needs |= expand(group, resource, verbs)
            if kind == "_changing":  # kopf keeps handler progress in status too
                needs |= expand(group, f"{resource}/status", ["patch"])
    for kind in ("_indexing", "_spawning"):
        for handler in getattr(registry, kind).get_all_handlers():
            needs |= expand(
                handler.selector.group or "", handler.selector.any_name, ("list", "watch")
            )
    return needs


def applied_children_needs() -> set[Need]:
    isvc = InferenceService.model_validate(SAMPLE)
    # The same service across two nodes: its replicas become LeaderWorkerSets.
    two_nodes = {
        "resources": {"gpus": 2, "gpusPerNode": 1},
        "engine": {"parallelism": {"tensor": 2}},
    }
    spread = InferenceService.model_validate({**SAMPLE, "spec": {**SAMPLE["spec"], **two_nodes}})
    options = RenderOptions(prometheus_operator=True, leader_worker_set=True)
    children = [*render_children(isvc, options), *render_children(spread, options)]
    needs: set[Need] = set()
    for child in children:
        group = child["apiVersion"].rpartition("/")[0]
        needs |= expand(group, plural(child["kind"]), ("create", "patch"))
        for ref in child["metadata"].get("ownerReferences", []):
            if ref.get("blockOwnerDeletion"):
                # OwnerReferencesPermissionEnforcement (OpenShift) lets only a client that
                # may update the owner's finalizers set blockOwnerDeletion.
                owner = (ref["apiVersion"].rpartition("/")[0], plural(ref["kind"]))
                needs.add((owner[0], f"{owner[1]}/finalizers", "update"))
    return needs


def _api_group(method: str) -> str:
    method = method.split("(")[0]
    owners = [name for name in API_GROUPS if hasattr(getattr(client, name), method)]
    assert owners, f"no known kubernetes-client API has {method}: add its class to API_GROUPS"
    return API_GROUPS[owners[0]]


def client_call_needs() -> set[Need]:
    needs: set[Need] = set()
    sources = [*(REPO / "operator").rglob("*.py"), *(REPO / "autoscaler").rglob("*.py")]
    for path in sources:
        for m in CLIENT_CALL.finditer(path.read_text()):
            verb, name, sub = VERBS[m[1]], m[2], (m[3] or "").lstrip("_")
            if name == "custom_object" and verb == "delete":
                # The one custom delete: a pool's LeaderWorkerSet (operator/kube.py).
                group, resource = "leaderworkerset.x-k8s.io", "leaderworkersets"
            elif name == "custom_object":
                # The InferenceService's, or in the adapter controller's module the
                # LoRAAdapter's (the monitoring children's applies use the same method;
                # applied_children_needs has those).
                lora = "from infleet.api.lora_adapter import PLURAL" in path.read_text()
                group, resource = GROUP, LORA_PLURAL if lora else PLURAL
            else:
                group, resource = _api_group(m[0][1:]), plural(name)
            needs.add((group, f"{resource}/{sub}" if sub else resource, verb))
    return needs


def cluster_call_needs() -> set[Need]:
    needs: set[Need] = set()
    for path in (REPO / "operator").rglob("*.py"):
        for m in CLUSTER_CALL.finditer(path.read_text()):
            needs.add(("", plural(m[2]), VERBS[m[1]]))
    return needs


def kopf_internal_needs() -> dict[str, set[Need]]:
    listed = yaml.safe_load((HERE / "operator_permissions.yaml").read_text())
    return {
        scope: {n for e in entries for n in expand(e["group"], e["resource"], e["verbs"])}
        for scope, entries in listed.items()
    }


def operator_needs() -> dict[str, set[Need]]:
    """{"cluster": cluster-scoped needs, "namespaced": needs in each watched namespace,
    "release": needs in the operator's own namespace (its leader Lease)}."""
    internal = kopf_internal_needs()
    derived = kopf_handler_needs() | applied_children_needs() | client_call_needs()
    release = {n for n in derived if n[:2] == LEASES}
    # A watch of a cluster-scoped kind (namespaces: engine.lora.namespaceSelector) is one.
    cluster = {n for n in derived if n[:2] in CLUSTER_SCOPED}
    return {
        "cluster": internal["cluster"] | cluster_call_needs() | cluster,
        "namespaced": internal["namespaced"] | (derived - release - cluster),
        "release": release,
    }
