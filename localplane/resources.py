"""The resource types the API server serves: built-ins and those CRDs register."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(slots=True)
class ScaleSpec:
    """Where a scale subresource reads and writes replicas (paths like `.spec.replicas`)."""

    spec_replicas: str
    status_replicas: str
    label_selector: str | None = None


@dataclass(slots=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    status_subresource: bool = False
    scale: ScaleSpec | None = None
    # Built-ins and CRs bump metadata.generation when their desired state changes.
    has_generation: bool = False
    schema: dict[str, Any] | None = None  # a CRD version's openAPIV3Schema
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    is_custom: bool = False
    extra_subresources: list[str] = field(default_factory=list)  # e.g. pods/log

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: every version of a group/plural shares one set of objects;
        events.k8s.io Events are stored as core Events (eventsv1.py converts)."""
        if self.group == "events.k8s.io":
            return ("", "events")
        return (self.group, self.plural)


def _rt(group: str, version: str, kind: str, plural: str, **kw: Any) -> ResourceType:
    return ResourceType(group, version, kind, plural, **kw)


def _replicas(selector: str | None = ".status.selector") -> ScaleSpec:
    return ScaleSpec(".spec.replicas", ".status.replicas", selector)


BUILTINS: list[ResourceType] = [
    _rt(
        "",
        "v1",
        "Namespace",
        "namespaces",
        namespaced=False,
        short_names=["ns"],
        status_subresource=True,
    ),
    _rt("", "v1", "Node", "nodes", namespaced=False, short_names=["no"], status_subresource=True),
    _rt(
        "",
        "v1",
        "Pod",
        "pods",
        short_names=["po"],
        categories=["all"],
        status_subresource=True,
        extra_subresources=["log", "eviction", "binding"],
    ),
    _rt(
        "",
        "v1",
        "Service",
        "services",
        short_names=["svc"],
        categories=["all"],
        status_subresource=True,
    ),
    _rt("", "v1", "Endpoints", "endpoints", short_names=["ep"]),
    _rt("", "v1", "ConfigMap", "configmaps", short_names=["cm"]),
    _rt("", "v1", "Secret", "secrets"),
    _rt("", "v1", "ServiceAccount", "serviceaccounts", short_names=["sa"]),
    _rt("", "v1", "Event", "events", short_names=["ev"]),
    _rt(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        short_names=["pvc"],
        status_subresource=True,
    ),
    _rt(
        "batch",
        "v1",
        "Job",
        "jobs",
        categories=["all"],
        status_subresource=True,
        has_generation=True,
    ),
    _rt(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short_names=["deploy"],
        categories=["all"],
        status_subresource=True,
        scale=_replicas(),
        has_generation=True,
    ),
    _rt(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        short_names=["rs"],
        categories=["all"],
        status_subresource=True,
        scale=_replicas(),
        has_generation=True,
    ),
    _rt(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        short_names=["sts"],
        status_subresource=True,
        scale=_replicas(),
        has_generation=True,
    ),
    _rt(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        short_names=["ds"],
        status_subresource=True,
        has_generation=True,
    ),
    _rt("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    _rt(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short_names=["pdb"],
        status_subresource=True,
        has_generation=True,
    ),
    _rt("coordination.k8s.io", "v1", "Lease", "leases"),
    # Stored, never enforced: no network plugin here (docs/localplane.md).
    _rt("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=["netpol"]),
    _rt("events.k8s.io", "v1", "Event", "events", short_names=["ev"]),
    _rt(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short_names=["crd", "crds"],
        status_subresource=True,
        has_generation=True,
    ),
    _rt("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _rt("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _rt("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _rt(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        namespaced=False,
    ),
    _rt(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=["hpa"],
        status_subresource=True,
    ),
]


class Registry:
    """Resource types by group/version/plural; CRDs add and remove theirs at runtime."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self.revision = 0  # bumps on every change so discovery/OpenAPI hashes change
        for rt in BUILTINS:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        self.revision += 1

    def remove_group_plural(self, group: str, plural: str) -> None:
        for k in [k for k in self._types if k[0] == group and k[2] == plural]:
            del self._types[k]
        self.revision += 1

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def for_key(self, key: tuple[str, str]) -> ResourceType | None:
        """Any served version of a storage key (group, plural)."""
        return next((rt for rt in self._types.values() if rt.key == key), None)

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions (the first is preferred), core group excluded."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            if rt.group and rt.version not in out.setdefault(rt.group, []):
                out[rt.group].append(rt.version)
        return out

    def in_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and rt.version == version]
