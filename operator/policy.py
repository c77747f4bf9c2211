"""The platform policy: what each tenant may ask for, and whom engines admit.

A file the platform team owns (`infleet operator --platform-policy FILE`; the chart renders
it from `platformPolicy` into a ConfigMap), not a custom resource: tenants cannot read or
change it through the API, it needs no extra RBAC or CRD, it is reviewed and versioned with
the chart, and a change rolls the operator (the chart hashes it into the pod), which then
checks every service again. Rules match namespaces by name (globs) or by the namespace's
labels, which tenants do not control, never by labels on the InferenceService.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from infleet.operator.errors import describe


class PolicyModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LabelSelector(PolicyModel):
    """A metav1.LabelSelector over the namespace's labels."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[dict[str, Any]] = Field(default_factory=list)

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for expr in self.match_expressions:
            key, op, values = expr["key"], expr["operator"], expr.get("values") or []
            have = labels.get(key)
            ok = {
                "In": have in values,
                "NotIn": have not in values,
                "Exists": key in labels,
                "DoesNotExist": key not in labels,
            }[op]
            if not ok:
                return False
        return True


class NodePool(PolicyModel):
    """A set of nodes the platform can grant: the labels every node of it carries."""

    name: str
    node_selector: dict[str, str] = Field(min_length=1)


class TolerationPattern(PolicyModel):
    """An allowed toleration; a field left out matches any value."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None

    def allows(self, toleration: dict[str, Any]) -> bool:
        wanted = self.model_dump(exclude_none=True)
        have = {"operator": "Equal", **toleration}
        return all(have.get(name) == value for name, value in wanted.items())


class TenantRule(PolicyModel):
    """What the namespaces it matches may ask for. A limit left out is not limited."""

    name: str
    namespaces: list[str] = Field(default_factory=list)  # names or globs (team-*)
    namespace_selector: LabelSelector | None = None
    node_pools: list[str] | None = None
    tolerations: list[TolerationPattern] | None = None
    priority_classes: list[str] | None = None
    max_gpus_per_replica: int | None = Field(None, ge=0)
    max_gpus: int | None = Field(None, ge=0)  # resources.gpus x scaling.maxReplicas
    host_path_caches: list[str] = Field(default_factory=list)  # node directories allowed
    ingress_from: list[dict[str, Any]] = Field(default_factory=list)  # NetworkPolicyPeers

    def matches(self, namespace: str, labels: dict[str, str] | None) -> bool:
        if any(fnmatch.fnmatchcase(namespace, pattern) for pattern in self.namespaces):
            return True
        return self.namespace_selector is not None and self.namespace_selector.matches(labels or {})


class NetworkSettings(PolicyModel):
    """The NetworkPolicy rendered for every service (operator/network_policy.py)."""

    enabled: bool = True
    same_namespace: bool = True  # the service's own namespace may call it
    ingress_from: list[dict[str, Any]] = Field(default_factory=list)  # e.g. the gateway
    prometheus: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ]
    )
    operator: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "infleet-system"}
                },
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "infleet-operator"}},
            }
        ]
    )


class PlatformPolicy(PolicyModel):
    node_pools: list[NodePool] = Field(default_factory=list)
    tenants: list[TenantRule] = Field(default_factory=list)
    # For namespaces no tenant rule matches: unlimited unless set; `null` refuses them.
    defaults: TenantRule | None = Field(default_factory=lambda: TenantRule(name="defaults"))
    network: NetworkSettings = Field(default_factory=NetworkSettings)

    def rule_for(self, namespace: str, labels: dict[str, str] | None) -> TenantRule | None:
        """The first rule matching the namespace, else `defaults` (None: refused)."""
        for rule in self.tenants:
            if rule.matches(namespace, labels):
                return rule
        return self.defaults

    def needs_namespace_labels(self) -> bool:
        return any(rule.namespace_selector is not None for rule in self.tenants)

    def pool(self, name: str) -> NodePool:
        return next(p for p in self.node_pools if p.name == name)


def load_policy(path: Path) -> PlatformPolicy:
    """The policy in `path`; ValueError naming the file and the field."""
    try:
        policy = PlatformPolicy.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as err:
        raise ValueError(f"{path}: {describe(err)}") from err
    known = {p.name for p in policy.node_pools}
    for rule in [*policy.tenants, *([policy.defaults] if policy.defaults else [])]:
        unknown = sorted(set(rule.node_pools or []) - known)
        if unknown:
            raise ValueError(f"{path}: tenant {rule.name}: nodePools {unknown} are not defined")
    return policy
