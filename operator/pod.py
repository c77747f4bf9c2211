"""The pod template of one pool: engine container, model fetch, placement, draining."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infleet.api import InferenceServiceSpec
from infleet.operator.admin_key import admin_key_env
from infleet.operator.api_keys import api_key_env, api_keys_mounts, api_keys_volumes
from infleet.operator.engines import CONFIG_PATH, EngineProfile
from infleet.operator.kube_versions import PRESTOP_SLEEP, KubeVersion, has
from infleet.operator.kv_tiers import memory_with_tiers, nvme_mounts, nvme_volumes, tier_env
from infleet.operator.lws import pod_gpus
from infleet.operator.model_source import ModelSource
from infleet.operator.names import CONFIG_HASH, Pool, config_map_name, pool_labels
from infleet.operator.pod_security import (
    container_security_context,
    engine_env,
    pod_security_context,
    writable_mounts,
    writable_volumes,
)
from infleet.operator.presets import placement

# Seconds for the endpoints controller and kube-proxy to stop sending new requests to a
# terminating pod before the engine sees SIGTERM.
ENDPOINT_DRAIN_SECONDS = 5
# Slack after the drain before the kubelet's SIGKILL.
KILL_MARGIN_SECONDS = 10
# /dev/shm (memory-backed) per GPU of a multi-GPU replica: counted in its memory use.
DSHM_GIB_PER_GPU = 2
# Model loading can take many minutes; the startup probe allows 30 before a restart.
STARTUP_PERIOD_SECONDS, STARTUP_FAILURES = 10, 180


@dataclass(frozen=True, slots=True)
class PodInputs:
    name: str
    spec: InferenceServiceSpec
    profile: EngineProfile
    model: ModelSource
    image: str
    command: list[str]
    args: list[str]
    config_hash: str
    kube_version: KubeVersion | None  # the server's; None: the newest


def grace_timing(spec: InferenceServiceSpec, profile: EngineProfile) -> tuple[int, int]:
    """(preStop sleep, terminationGracePeriodSeconds).

    An engine that drains on SIGTERM gets it right after the endpoint drain and finishes
    in-flight requests itself; one that does not keeps serving them during a longer
    preStop sleep, so in both cases in-flight requests get shutdownGraceSeconds.
    """
    grace = spec.engine.shutdown_grace_seconds
    pre_stop = ENDPOINT_DRAIN_SECONDS + (0 if profile.drains_on_sigterm else grace)
    return pre_stop, ENDPOINT_DRAIN_SECONDS + grace + KILL_MARGIN_SECONDS


def _resources(spec: InferenceServiceSpec) -> dict[str, Any]:
    # Quantities go into pod specs as strings, the canonical Kubernetes form.
    amounts = {"cpu": str(spec.resources.cpu), "memory": memory_with_tiers(spec)}
    if spec.resources.gpus:
        amounts["nvidia.com/gpu"] = str(pod_gpus(spec))  # a multi-node replica: per pod
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def _engine_container(p: PodInputs, pre_stop: int) -> dict[str, Any]:
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    own = [e.to_wire() for e in p.spec.engine.env]  # engine.env may move HOME and the caches
    env += api_key_env(p.spec, p.profile) + tier_env(p.spec, p.profile.kind)
    # The admin key (a reference) and the defaults: engine.env may override either.
    defaults = admin_key_env(p.name, p.spec, p.profile) + engine_env()
    env += [e for e in defaults if e["name"] not in {o["name"] for o in own}] + own
    mounts = [*p.model.mounts, *writable_mounts(), *api_keys_mounts(p.spec)]
    mounts += nvme_mounts(p.spec)
    if p.profile.reads_config_file:
        mounts.append({"name": "engine-config", "mountPath": CONFIG_PATH.rsplit("/", 1)[0]})
    if p.spec.engine.parallelism.tensor * p.spec.engine.parallelism.pipeline > 1:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})  # NCCL between GPUs
    return {
        "name": "engine",
        "image": p.image,
        "command": p.command,
        "args": p.args,
        "env": env,
        "ports": [{"name": "http", "containerPort": p.profile.port, "protocol": "TCP"}],
        "resources": _resources(p.spec),
        "volumeMounts": mounts,
        "startupProbe": _probe(p.profile.readiness_path, STARTUP_PERIOD_SECONDS, STARTUP_FAILURES),
        "readinessProbe": _probe(p.profile.readiness_path, 5, 3),
        "livenessProbe": _probe(p.profile.liveness_path, 15, 4),
        "lifecycle": {"preStop": _pre_stop(pre_stop, p.kube_version)},
        "securityContext": container_security_context(),
    }


def _pre_stop(seconds: int, kube_version: KubeVersion | None) -> dict[str, Any]:
    if has(kube_version, PRESTOP_SLEEP):
        return {"sleep": {"seconds": seconds}}  # needs no shell or binary in the image
    # Older servers: every engine image we default to ships coreutils' sleep.
    return {"exec": {"command": ["sleep", str(seconds)]}}


def _volumes(p: PodInputs) -> list[dict[str, Any]]:
    volumes = [*p.model.volumes, *writable_volumes(), *api_keys_volumes(p.spec)]
    volumes += nvme_volumes(p.spec)
    if p.profile.reads_config_file:
        volumes.append({"name": "engine-config", "configMap": {"name": config_map_name(p.name)}})
    if p.spec.engine.parallelism.tensor * p.spec.engine.parallelism.pipeline > 1:
        # NCCL's shared-memory transport between a node's GPUs (and the engines' own
        # worker IPC) lives in /dev/shm; the container runtime's 64 MiB default is too small.
        limit = f"{DSHM_GIB_PER_GPU * max(pod_gpus(p.spec), 1)}Gi"
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": limit}})
    return volumes


def _spread(labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": labels},
            "matchLabelKeys": ["pod-template-hash"],
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def render_pod_template(p: PodInputs, pool: Pool) -> dict[str, Any]:
    labels = pool_labels(p.name, pool)
    pre_stop, termination_grace = grace_timing(p.spec, p.profile)
    where = placement(p.spec, pool)
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(p.profile.run_as_user),
        # The engines never call the Kubernetes API; the template may ask for a token.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": termination_grace,
        "containers": [_engine_container(p, pre_stop)],
        "volumes": _volumes(p),
        "tolerations": where.tolerations,
        "topologySpreadConstraints": _spread(labels),
    }
    if p.model.init_containers:
        pod["initContainers"] = p.model.init_containers
    if where.node_selector:
        pod["nodeSelector"] = where.node_selector
    if where.affinity:
        pod["affinity"] = where.affinity
    return {
        "metadata": {"labels": labels, "annotations": {CONFIG_HASH: p.config_hash}},
        "spec": pod,
    }
