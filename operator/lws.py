"""A replica across nodes: one LeaderWorkerSet group (leaderworkerset.x-k8s.io/v1) per
replica instead of one pod, when resources.gpusPerNode is less than resources.gpus.

The group has gpus / gpusPerNode pods, one per node, each with gpusPerNode GPUs. The
leader (worker index 0) serves the API and is the Service's endpoint; the workers run the
same engine with the group's shape (the engine table's `multi_node` flags) and no probes
of their own: a worker that fails fails the group, which LeaderWorkerSet recreates whole
(`RecreateGroupOnPodRestart`). The LWS's `replicas` counts groups, so the autoscaler's
replica is a group.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from infleet.api import InferenceServiceSpec
from infleet.autoscaler.kube_view import WORKER_INDEX_LABEL
from infleet.operator.engines import EngineProfile
from infleet.operator.errors import SpecError, unsupported

API_VERSION = "leaderworkerset.x-k8s.io/v1"
KIND = "LeaderWorkerSet"
_PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def pod_gpus(spec: InferenceServiceSpec) -> int:
    """GPUs of one pod: all of the replica's, or one node's share of them."""
    return spec.resources.gpus_per_node or spec.resources.gpus


def nodes_per_replica(spec: InferenceServiceSpec) -> int:
    return spec.resources.gpus // pod_gpus(spec) if spec.resources.gpus else 1


def serving_selector(spec: InferenceServiceSpec, labels: dict[str, str]) -> dict[str, str]:
    """The Service's pods: every replica's, or only the leaders of multi-node groups (the
    workers serve no HTTP)."""
    if nodes_per_replica(spec) == 1:
        return labels
    return {**labels, WORKER_INDEX_LABEL: "0"}


def check_multi_node(spec: InferenceServiceSpec, profile: EngineProfile, installed: bool) -> None:
    """SpecError when a multi-node replica cannot be made (before anything is applied)."""
    nodes = nodes_per_replica(spec)
    if nodes == 1:
        return
    if profile.multi_node is None:
        raise unsupported(profile.kind, "resources.gpusPerNode", "a replica across nodes")
    if not installed:
        raise SpecError(
            "resources.gpusPerNode",
            f"{spec.resources.gpus} GPUs per replica at {spec.resources.gpus_per_node} per "
            f"node make {nodes}-pod groups, which need the LeaderWorkerSet CRD ({API_VERSION}); "
            "it is not installed in this cluster",
            "LeaderWorkerSetNotInstalled",
        )


def _with_args(template: dict[str, Any], extra: list[str], worker: bool) -> dict[str, Any]:
    out = copy.deepcopy(template)
    engine = out["spec"]["containers"][0]
    engine["args"] = [*engine["args"], *extra]
    if worker:  # the leader alone serves HTTP; a worker's health is its group's
        for probe in _PROBES:
            engine.pop(probe, None)
        engine.pop("ports", None)
    return out


def render_leader_worker_set(
    name: str,
    labels: dict[str, str],
    template: dict[str, Any],
    replicas: int,
    spec: InferenceServiceSpec,
    profile: EngineProfile,
    meta: Callable[[str, dict[str, str]], dict[str, Any]],
) -> dict[str, Any]:
    """One pool's groups: `replicas` groups of nodes_per_replica(spec) pods."""
    nodes = nodes_per_replica(spec)
    assert profile.multi_node is not None
    leader = _with_args(template, profile.multi_node(nodes, True), worker=False)
    worker = _with_args(template, profile.multi_node(nodes, False), worker=True)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": meta(name, labels),
        "spec": {
            "replicas": replicas,
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": {
                "size": nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": leader,
                "workerTemplate": worker,
            },
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
            },
        },
    }
