"""Tenant guardrails: a rendered service checked against its namespace's platform rule.

Pure: the rendered pod templates (template merged in) go through `enforce`, which raises
SpecError (reason PolicyViolation, naming the field) for anything the rule does not grant,
and confines the pods to the granted node pools with a required node affinity, so no
selector, affinity or toleration of the tenant's can reach another pool.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from infleet.api import InferenceServiceSpec
from infleet.operator.errors import SpecError
from infleet.operator.kv_tiers import NVME_VOLUME
from infleet.operator.policy import NodePool, PlatformPolicy, TenantRule
from infleet.operator.presets import GPU_TOLERATION

Obj = dict[str, Any]
REASON = "PolicyViolation"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


@dataclass(frozen=True, slots=True)
class Guardrails:
    """The rule that applies to one service's namespace (None: the namespace is refused)."""

    platform: PlatformPolicy
    namespace: str
    rule: TenantRule | None


def violation(field: str, message: str) -> SpecError:
    return SpecError(field, message, REASON)


def _check_gpus(spec: InferenceServiceSpec, rule: TenantRule, where: str) -> None:
    gpus = spec.resources.gpus
    if rule.max_gpus_per_replica is not None and gpus > rule.max_gpus_per_replica:
        raise violation(
            "resources.gpus",
            f"{gpus} GPUs per replica; the platform allows {rule.max_gpus_per_replica} {where}",
        )
    total = gpus * spec.scaling.max_replicas
    if rule.max_gpus is not None and total > rule.max_gpus:
        raise violation(
            "scaling.maxReplicas",
            f"up to {total} GPUs (resources.gpus x scaling.maxReplicas); the platform allows "
            f"{rule.max_gpus} {where}",
        )


def _toleration_field(spec: InferenceServiceSpec, pool: str, toleration: Obj) -> str:
    if toleration in [t.to_wire() for t in spec.template.spec.tolerations]:
        return "template.spec.tolerations"
    if toleration in [t.to_wire() for t in getattr(spec.capacity, pool).tolerations]:
        return f"capacity.{pool}.tolerations"
    return "capacity.spot.preset"


def _check_pod(
    spec: InferenceServiceSpec, pool: str, pod: Obj, rule: TenantRule, where: str
) -> None:
    priority = pod.get("priorityClassName")
    if priority and rule.priority_classes is not None and priority not in rule.priority_classes:
        raise violation(
            "template.spec.priorityClassName",
            f"priority class {priority!r} is not allowed {where} "
            f"(allowed: {', '.join(rule.priority_classes) or 'none'})",
        )
    for toleration in pod.get("tolerations") or []:
        if toleration == GPU_TOLERATION or rule.tolerations is None:
            continue  # GPU pods always tolerate the GPU taint; resources.gpus is limited above
        if not any(pattern.allows(toleration) for pattern in rule.tolerations):
            shown = ", ".join(f"{k}={v}" for k, v in toleration.items())
            raise violation(
                _toleration_field(spec, pool, toleration),
                f"the {pool} pool's toleration {{{shown}}} is not allowed {where}",
            )
    for volume in pod.get("volumes") or []:
        path = (volume.get("hostPath") or {}).get("path")
        if path is not None and not any(
            path == allowed or path.startswith(allowed.rstrip("/") + "/")
            for allowed in rule.host_path_caches
        ):
            field = {
                "model-cache": "model.cache.hostPath.path",
                NVME_VOLUME: "engine.kvCache.nvmeVolume.hostPath.path",
            }.get(volume["name"], f"template.spec.volumes[{volume['name']}]")
            raise violation(field, f"node directory {path} is not allowed {where}")


def _pools_for(
    pod: Obj, granted: list[NodePool], policy: PlatformPolicy, pool: str, where: str
) -> None:
    selector = pod.get("nodeSelector") or {}

    def compatible(p: NodePool) -> bool:
        return all(selector.get(k, v) == v for k, v in p.node_selector.items())

    if any(compatible(p) for p in granted):
        return
    asked = [p.name for p in policy.node_pools if compatible(p) and p not in granted]
    what = f"node pool {asked[0]}" if asked else "nodes outside every granted node pool"
    raise violation(
        f"capacity.{pool}.nodeSelector",
        f"the {pool} pool selects {what}, which is not granted {where} "
        f"(granted: {', '.join(p.name for p in granted) or 'none'})",
    )


def confine(pod: Obj, granted: list[NodePool]) -> None:
    """AND "on a granted pool" into the pod's required node affinity (terms are ORed, so
    each existing term is combined with each pool's)."""
    pool_terms = [
        [{"key": k, "operator": "In", "values": [v]} for k, v in p.node_selector.items()]
        for p in granted
    ]
    node_affinity = (pod.get("affinity") or {}).get("nodeAffinity") or {}
    existing = (node_affinity.get(REQUIRED) or {}).get("nodeSelectorTerms") or [{}]
    terms = [
        {**term, "matchExpressions": [*(term.get("matchExpressions") or []), *pool]}
        for term, pool in itertools.product(existing, pool_terms)
    ]
    required = {"nodeSelectorTerms": terms}
    pod["affinity"] = {
        **(pod.get("affinity") or {}),
        "nodeAffinity": {**node_affinity, REQUIRED: required},
    }


def enforce(spec: InferenceServiceSpec, pods: dict[str, Obj], guard: Guardrails) -> None:
    """Checks the pods (pool -> pod spec) against the rule; confines them to granted pools."""
    rule, where = guard.rule, f"in namespace {guard.namespace}"
    if rule is None:
        raise violation(
            "metadata.namespace", f"no platform policy rule admits namespace {guard.namespace}"
        )
    where = f"{where} (platform rule {rule.name})"
    _check_gpus(spec, rule, where)
    for pool, pod in pods.items():
        _check_pod(spec, pool, pod, rule, where)
        if rule.node_pools is not None:
            granted = [guard.platform.pool(name) for name in rule.node_pools]
            _pools_for(pod, granted, guard.platform, pool, where)
            confine(pod, granted)
