"""Spec -> desired children: pure functions, no I/O. `render_children` is the entry point."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from infleet.api import InferenceService
from infleet.operator.engines import ENGINES, EngineProfile, Settings, engine_command
from infleet.operator.guardrails import Guardrails, enforce
from infleet.operator.kube_versions import KubeVersion
from infleet.operator.lora_pod import add_lora
from infleet.operator.lws import (
    check_multi_node,
    nodes_per_replica,
    render_leader_worker_set,
    serving_selector,
)
from infleet.operator.model_source import DEFAULT_FETCHER_IMAGE, ModelSource, resolve_model
from infleet.operator.monitoring import render_prometheus_rule, render_service_monitor
from infleet.operator.names import (
    RENDERED_HASH,
    Pool,
    child_labels,
    config_map_name,
    pool_deployment_names,
    pool_labels,
)
from infleet.operator.network_policy import network_policy_spec
from infleet.operator.pod import PodInputs, render_pod_template
from infleet.operator.pod_template import apply_template
from infleet.operator.policy import NetworkSettings, PlatformPolicy
from infleet.operator.replicas import PoolReplicas, active_pools, plan_replicas
from infleet.operator.router import (
    DEFAULT_ROUTER_IMAGE,
    render_router,
    router_enabled,
    router_keys,
)

SERVICE_PORT = 8000  # one port for every engine kind, so the URL does not depend on it


@dataclass(frozen=True, slots=True)
class RenderOptions:
    prometheus_operator: bool = False  # ServiceMonitor/PrometheusRule CRDs exist
    leader_worker_set: bool = False  # the LeaderWorkerSet CRD exists (multi-node replicas)
    fetcher_image: str = DEFAULT_FETCHER_IMAGE
    engine_images: dict[str, str] = field(default_factory=dict)  # kind -> default image
    kube_version: KubeVersion | None = None  # the API server's; None: the newest
    platform: PlatformPolicy | None = None  # the platform policy; None: no guardrails
    namespace_labels: dict[str, str] | None = None  # the service's namespace's, for the policy
    router_image: str = DEFAULT_ROUTER_IMAGE  # the operator's own: it ships infleet.router


@dataclass(frozen=True, slots=True)
class Prepared:
    """What every child is built from; building it raises SpecError for bad specs."""

    isvc: InferenceService
    profile: EngineProfile
    model: ModelSource
    settings: Settings
    pod: PodInputs
    guardrails: Guardrails | None
    network: NetworkSettings
    router: bool  # the router is on (operator/router.py)
    # The lora-sync sidecar's image (vLLM/SGLang with LoRA): the operator's, like the router's.
    sync_image: str = DEFAULT_ROUTER_IMAGE


def prepare(
    isvc: InferenceService, options: RenderOptions, adapters: Iterable[str] = ()
) -> Prepared:
    spec = isvc.spec
    profile = ENGINES[spec.engine.kind]
    model = resolve_model(spec.model, options.fetcher_image)
    settings, command, args = engine_command(spec, model, profile)
    image = spec.engine.image or options.engine_images.get(profile.kind, profile.image)
    config_hash = hashlib.sha256(yaml.safe_dump(settings).encode()).hexdigest()[:16]
    pod = PodInputs(
        isvc.name, spec, profile, model, image, command, args, config_hash, options.kube_version
    )
    guard = None
    if options.platform is not None:
        rule = options.platform.rule_for(isvc.namespace, options.namespace_labels)
        guard = Guardrails(options.platform, isvc.namespace, rule)
    network = options.platform.network if options.platform else NetworkSettings()
    router = router_enabled(spec, adapters)  # whether, never what: the router watches the set
    return Prepared(
        isvc, profile, model, settings, pod, guard, network, router, options.router_image
    )


def _meta(isvc: InferenceService, name: str, labels: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": isvc.namespace, "labels": labels}
    uid = isvc.metadata.get("uid")
    if uid:  # `infleet render` has no live object to own the children
        # No blockOwnerDeletion: under OwnerReferencesPermissionEnforcement (OpenShift)
        # setting it needs `update` on inferenceservices/finalizers, and all it adds is a
        # foreground-deleted service waiting for its children to go first.
        meta["ownerReferences"] = [
            {
                "apiVersion": isvc.api_version,
                "kind": isvc.kind,
                "name": isvc.name,
                "uid": uid,
                "controller": True,
            }
        ]
    return meta


def render_config_map(p: Prepared) -> dict[str, Any]:
    name = config_map_name(p.isvc.name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(p.isvc, name, child_labels(p.isvc.name)),
        "data": {"engine.yaml": yaml.safe_dump(p.settings, sort_keys=False)},
    }


def render_pod_templates(p: Prepared) -> dict[Pool, dict[str, Any]]:
    """Each active pool's pod template, spec.template merged in and the platform's
    guardrails applied; SpecError when either refuses the spec."""
    spec = p.isvc.spec
    templates = {
        pool: apply_template(
            add_lora(render_pod_template(p.pod, pool), p.isvc.name, spec, p.profile, p.sync_image),
            spec,
            spec.template,
            pool,
        )
        for pool in active_pools(spec)
    }
    if p.guardrails is not None:
        enforce(spec, {pool: t["spec"] for pool, t in templates.items()}, p.guardrails)
    return templates


def render_deployments(p: Prepared, replicas: PoolReplicas) -> list[dict[str, Any]]:
    """One Deployment per pool, or one LeaderWorkerSet per pool where a replica spans
    nodes (operator/lws.py)."""
    names = pool_deployment_names(p.isvc.name)
    out = []
    for pool, template in render_pod_templates(p).items():
        labels = pool_labels(p.isvc.name, pool)
        if nodes_per_replica(p.isvc.spec) > 1:
            count = getattr(replicas, pool)
            meta = functools.partial(_meta, p.isvc)
            spec, profile = p.isvc.spec, p.profile
            out.append(
                render_leader_worker_set(names[pool], labels, template, count, spec, profile, meta)
            )
            continue
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _meta(p.isvc, names[pool], labels),
                "spec": {
                    "replicas": getattr(replicas, pool),
                    "selector": {"matchLabels": labels},
                    "template": template,
                    # Never below the current capacity during a rollout: one extra pod.
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                    },
                    "revisionHistoryLimit": 3,
                    "progressDeadlineSeconds": 1800,
                },
            }
        )
    return out


def render_network_policy(p: Prepared) -> dict[str, Any]:
    name = p.isvc.name
    rule = p.guardrails.rule if p.guardrails else None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(p.isvc, name, child_labels(name)),
        "spec": network_policy_spec(name, p.network, rule, router=p.router),
    }


def render_service(p: Prepared) -> dict[str, Any]:
    name = p.isvc.name
    port = {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(p.isvc, name, child_labels(name)),
        "spec": {"selector": serving_selector(p.isvc.spec, child_labels(name)), "ports": [port]},
    }


def render_pdb(p: Prepared) -> dict[str, Any]:
    name = p.isvc.name
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(p.isvc, name, child_labels(name)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": child_labels(name)},
            # A pod that never became ready must not block a node drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def render_monitoring(p: Prepared) -> list[dict[str, Any]]:
    name, namespace = p.isvc.name, p.isvc.namespace
    meta = _meta(p.isvc, name, child_labels(name))
    return [
        render_service_monitor(meta, name),
        render_prometheus_rule(meta, namespace, name, p.profile),
    ]


def render_router_children(p: Prepared, options: RenderOptions) -> list[dict[str, Any]]:
    def meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return _meta(p.isvc, name, labels)

    served = p.model.served_name
    name, spec = p.isvc.name, p.isvc.spec
    keys = router_keys(name, spec, p.profile)
    return render_router(name, spec, served, options.router_image, meta, keys)


def render_children(
    isvc: InferenceService, options: RenderOptions | None = None, adapters: Iterable[str] = ()
) -> list[dict]:
    """Every child of `isvc`, in apply order. Raises SpecError for a spec it cannot honour.

    `adapters`: the names of the LoRAAdapters aimed at it: with any, the router is on by
    default. Their names appear in no child (the router watches the adapter set)."""
    options = options or RenderOptions()
    p = prepare(isvc, options, adapters)
    check_multi_node(isvc.spec, p.profile, options.leader_worker_set)
    children = [render_config_map(p)]
    if p.network.enabled:  # before the pods, so none is ever reachable without it
        children.append(render_network_policy(p))
    children += render_deployments(p, plan_replicas(isvc))
    children += [render_service(p), render_pdb(p)]
    if p.router:
        children += render_router_children(p, options)
    if options.prometheus_operator:
        children += render_monitoring(p)
    return [stamped(child) for child in children]


def stamped(child: dict[str, Any]) -> dict[str, Any]:
    """The child with a hash of itself, so a child rendered differently is applied again
    even when the live one already holds every field (operator/diff.py)."""
    digest = hashlib.sha256(json.dumps(child, sort_keys=True).encode()).hexdigest()[:16]
    meta = child["metadata"]
    annotations = {**meta.get("annotations", {}), RENDERED_HASH: digest}
    return {**child, "metadata": {**meta, "annotations": annotations}}
