"""The router in front of a service's replicas (docs/router.md): pure render functions.

When on, a service gets, besides its engines' children: a ServiceAccount, a Role that may
read EndpointSlices (the router's discovery) and the service's adapter set ConfigMap (the
adapter names it accepts, and whose each is; nothing else) and its RoleBinding, a
ConfigMap with `spec.router`, a Deployment of two router replicas (`infleet router
--service NAME`, from the operator's own image, which ships `infleet.router`), a Service
in front of them and a PDB. `status.url` then names the router's Service; the engines'
Service stays, for the router and for anyone who wants a replica directly.

Router pods carry ROUTER_LABEL, not SERVICE_LABEL: selectors of the engines (their
Service, PDB, NetworkPolicy, status.selector, the autoscaler's pod index) never match them.

Where the engines authenticate tenants, the routers mount the same keys file (so limits,
metrics and prefix salts are per tenant, with the engine's own auth code, api/tenants.py)
and get the engines' admin key (their /router/* feed answers nothing else where they have
any key; operator/admin_key.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from infleet import __version__
from infleet.api import InferenceServiceSpec
from infleet.operator.admin_key import admin_key_env
from infleet.operator.api_keys import KEYS_DIR, KEYS_FILE, api_keys_volumes
from infleet.operator.engines import EngineProfile
from infleet.operator.lora_names import set_name
from infleet.operator.lora_pod import tenant_keys_volume
from infleet.operator.names import CONFIG_HASH, child_labels, router_labels, router_name
from infleet.operator.pod_security import container_security_context

Obj = dict[str, Any]
Meta = Callable[[str, dict[str, str]], Obj]  # (name, labels) -> metadata with owner reference
DEFAULT_ROUTER_IMAGE = f"ghcr.io/infleet/infleet-operator:{__version__}"  # it ships router/
ROUTER_PORT = 8000  # the engines' Service port too: the URL's port never depends on the router
ROUTER_REPLICAS = 2  # one per node (spread below), so losing a node never loses routing
SPEC_DIR = "/etc/infleet/router"
# Discovery's credentials, projected explicitly rather than automounted: the token works
# where a platform turns automounting off, and it is read where the flags say.
KUBE_API_DIR = "/var/run/secrets/infleet/kube-api"
TOKEN_SECONDS = 3600  # the kubelet rotates it at 80 %; the router re-reads it each request
# The router finishes requests in flight for this long after SIGTERM (its /health turns 503
# at once); the kubelet waits a little longer before SIGKILL.
GRACE_SECONDS = 30
KILL_MARGIN_SECONDS = 10
RUN_AS_USER = 65532  # images/Dockerfile: the infleet images' user
# Measured in docs/benchmarks.md#router-overhead: ~0.3 ms of CPU per request; a core
# routes ~3,000 requests/s, far past what a few replicas of an LLM serve.
RESOURCES = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


KUBE_API_SOURCES = [
    {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_SECONDS}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
]


@dataclass(frozen=True, slots=True)
class RouterKeys:
    """The service's credentials the routers need (references, never a key's value)."""

    volumes: list[Obj] = field(default_factory=list)  # the tenants' key hashes (0 or 1)
    env: list[Obj] = field(default_factory=list)  # the engines' admin key (0 or 1)


def router_keys(name: str, spec: InferenceServiceSpec, profile: EngineProfile) -> RouterKeys:
    """The keys file the engines read, wherever it comes from (spec.engine.apiKeys with
    format tenants, else the adapter controller's), and the admin key their feed checks
    (operator/admin_key.py: every service whose engines need one has one)."""
    keys = api_keys_volumes(spec) or [
        v for v in [tenant_keys_volume(name, spec, profile)] if v is not None
    ]
    return RouterKeys(keys, admin_key_env(name, spec, profile))


def router_enabled(spec: InferenceServiceSpec, adapters: Iterable[str] = ()) -> bool:
    """spec.router.enabled, or unset: on where routing pays, with more than one replica
    allowed (prefix and load) or with LoRA adapters (adapter affinity)."""
    if spec.router.enabled is not None:
        return spec.router.enabled
    return spec.scaling.max_replicas > 1 or spec.engine.lora.max_adapters > 0 or any(adapters)


def router_args(name: str, served_name: str, keys: RouterKeys | None = None) -> list[str]:
    """No adapter names: the router watches the adapter set, so that a new or deleted
    LoRAAdapter never changes this template (never rolls the routers)."""
    args = ["router", f"--model={served_name}", f"--service={name}", "--port-name=http"]
    args += [f"--adapter-set={set_name(name)}"]
    if keys is not None and keys.volumes:
        args.append(f"--api-keys-file={KEYS_FILE}")
    args += ["--host=$(POD_IP)"]  # as the engines: the pod's address, whatever the network
    args += [f"--spec={SPEC_DIR}/router.yaml", f"--port={ROUTER_PORT}"]
    args += [f"--shutdown-grace-seconds={GRACE_SECONDS}"]
    args += [f"--kube-token-file={KUBE_API_DIR}/token", f"--kube-ca-file={KUBE_API_DIR}/ca.crt"]
    return args


def render_router(
    name: str,
    spec: InferenceServiceSpec,
    served_name: str,
    image: str,
    meta: Meta,
    keys: RouterKeys | None = None,
) -> list[Obj]:
    """The router's children, in apply order (its RBAC before the pods that use it)."""
    own = child_labels(name)  # on each child, so the operator watches and prunes them
    rname, pods = router_name(name), router_labels(name)
    config = yaml.safe_dump(spec.router.to_wire(), sort_keys=False)
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(rname, own)}
    # Discovery reads its own service's EndpointSlices: get, list, watch in this namespace;
    # the adapter names come from the service's adapter set, that one ConfigMap, which the
    # router lists and watches by name (never `get`: the operator would need it to grant it).
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta(rname, own),
        "rules": [
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [set_name(name)],
                "verbs": ["list", "watch"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta(rname, own),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": rname},
        "subjects": [{"kind": "ServiceAccount", "name": rname}],
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(rname, own),
        "data": {"router.yaml": config},
    }
    template = _pod_template(name, served_name, image, config, keys or RouterKeys())
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(rname, own),
        "spec": {
            "replicas": ROUTER_REPLICAS,
            "selector": {"matchLabels": pods},
            "template": template,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "revisionHistoryLimit": 3,
        },
    }
    port = {"name": "http", "port": ROUTER_PORT, "targetPort": "http", "protocol": "TCP"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(rname, own),
        "spec": {"selector": pods, "ports": [port]},
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(rname, own),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": pods},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    return [account, role, binding, config_map, deployment, service, pdb]


def _pod_template(name: str, served_name: str, image: str, config: str, keys: RouterKeys) -> Obj:
    pods = router_labels(name)
    probe = {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 2}
    container = {
        "name": "router",
        "image": image,
        "command": ["infleet"],
        "args": router_args(name, served_name, keys),
        "env": [
            *(
                {"name": var, "valueFrom": {"fieldRef": {"fieldPath": path}}}
                for var, path in (
                    ("POD_IP", "status.podIP"),
                    ("POD_NAMESPACE", "metadata.namespace"),
                )
            ),
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            *keys.env,
        ],
        "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
        "resources": RESOURCES,
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "kube-api", "mountPath": KUBE_API_DIR, "readOnly": True},
            *({"name": v["name"], "mountPath": KEYS_DIR, "readOnly": True} for v in keys.volumes),
        ],
        "readinessProbe": {**probe, "periodSeconds": 2, "failureThreshold": 2},
        # Draining answers 503 too: only a router stuck for a minute is restarted.
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": {
            **container_security_context(),
            "readOnlyRootFilesystem": True,  # the router writes nothing
        },
    }
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": pods},
            "matchLabelKeys": ["pod-template-hash"],
        }
    ]
    spec_hash = hashlib.sha256(config.encode()).hexdigest()[:16]
    return {
        # The spec is read at start: a changed spec rolls the routers.
        "metadata": {"labels": pods, "annotations": {CONFIG_HASH: spec_hash}},
        "spec": {
            "serviceAccountName": router_name(name),  # EndpointSlices: discovery's token
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": GRACE_SECONDS + KILL_MARGIN_SECONDS,
            "containers": [container],
            "automountServiceAccountToken": False,  # projected below, where args say
            "volumes": [
                {"name": "spec", "configMap": {"name": router_name(name)}},
                {"name": "kube-api", "projected": {"sources": KUBE_API_SOURCES}},
                *keys.volumes,
            ],
            "topologySpreadConstraints": spread,
        },
    }
