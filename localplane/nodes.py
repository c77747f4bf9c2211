"""The node pool: Node objects from a config, and spot interruptions.

An interruption is asked for through the API, so kubectl can inject one:
`kubectl annotate node spot-1 localplane.infleet.io/interrupt=20` (notice seconds;
empty for the pool default). The node is tainted as GKE taints a reclaimed spot VM,
every pod on it gets a Warning Event (the notice), after the notice each pod gets the
`DisruptionTarget` condition (reason `TerminationByKubelet`) and is deleted with its own
grace period, then the node goes and a fresh one of its group takes its place.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infleet.localplane.controller import Controller
from infleet.localplane.crud import Api
from infleet.localplane.disruption import mark_disruption_target
from infleet.localplane.events import record
from infleet.localplane.store import WatchEvent, now_rfc3339

INTERRUPT_ANNOTATION = "localplane.infleet.io/interrupt"
GROUP_LABEL = "localplane.infleet.io/node-group"
TERMINATION_TAINT = {
    "key": "cloud.google.com/impending-node-termination",
    "value": "true",
    "effect": "NoSchedule",
}
SPOT_LABELS = {"cloud.google.com/gke-spot": "true"}
SPOT_TAINTS = [{"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}]


@dataclass(slots=True)
class NodeGroup:
    name: str
    count: int
    gpus: int = 1
    cpu: str = "8"
    memory: str = "32Gi"
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class NodePool:
    groups: list[NodeGroup]
    notice_seconds: float = 30.0


def default_pool(dedicated: int = 2, spot: int = 4, gpus: int = 1) -> NodePool:
    return NodePool(
        [
            NodeGroup("dedicated", dedicated, gpus, labels={"infleet.io/capacity": "dedicated"}),
            NodeGroup("spot", spot, gpus, labels=dict(SPOT_LABELS), taints=list(SPOT_TAINTS)),
        ]
    )


def load_pool(path: Path) -> NodePool:
    """YAML: {noticeSeconds: 30, groups: [{name, count, gpus, cpu, memory, labels, taints}]}"""
    doc = yaml.safe_load(path.read_text()) or {}
    groups = []
    for i, g in enumerate(doc.get("groups") or []):
        if not isinstance(g, dict) or "name" not in g or "count" not in g:
            raise ValueError(f"{path}: groups[{i}] needs a name and a count")
        groups.append(
            NodeGroup(
                g["name"],
                int(g["count"]),
                int(g.get("gpus", 1)),
                str(g.get("cpu", "8")),
                str(g.get("memory", "32Gi")),
                dict(g.get("labels") or {}),
                list(g.get("taints") or []),
            )
        )
    if not groups:
        raise ValueError(f"{path}: no node groups")
    return NodePool(groups, float(doc.get("noticeSeconds", 30)))


def node_object(name: str, group: NodeGroup, address: str) -> dict[str, Any]:
    capacity = {
        "cpu": group.cpu,
        "memory": group.memory,
        "pods": "110",
        "nvidia.com/gpu": str(group.gpus),
    }
    stamp = now_rfc3339()
    return {
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "local-emulated-gpu",
                "topology.kubernetes.io/zone": "local",
                GROUP_LABEL: group.name,
                **group.labels,
            },
        },
        "spec": {"taints": [dict(t) for t in group.taints]} if group.taints else {},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "local process kubelet is posting ready status",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0-infleet-localplane",
                "containerRuntimeVersion": "infleet-process://local",
                "osImage": "local processes (images are ignored)",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


class NodeManager(Controller):
    """Creates the pool, carries out interruptions, and collects pods of vanished nodes."""

    manager = "node-controller"

    def __init__(self, api: Api, pool: NodePool) -> None:
        super().__init__(api)
        self.pool = pool
        self._index = {g.name: itertools.count(0) for g in pool.groups}
        self._addresses = (f"127.3.{i // 250}.{i % 250 + 1}" for i in itertools.count())
        self._interrupting: set[str] = set()
        self._running: set[asyncio.Task[None]] = set()
        self.rt = api.registry.get("", "v1", "nodes")
        self.pods = api.registry.get("", "v1", "pods")

    def create_pool(self) -> None:
        for group in self.pool.groups:
            for _ in range(group.count):
                self._add_node(group)

    def _add_node(self, group: NodeGroup) -> None:
        name = f"{group.name}-{next(self._index[group.name])}"
        obj = node_object(name, group, next(self._addresses))
        status = obj.pop("status")
        self.api.create(self.rt, "", obj, self.manager)
        created = self.api.get(self.rt, "", name)
        created["status"] = status
        self.api.update(self.rt, "", name, created, "kubelet", subresource="status")

    def on_event(self, event: WatchEvent) -> None:
        if event.key != ("", "nodes"):
            return
        name = event.obj["metadata"]["name"]
        if event.type == "DELETED":
            self.enqueue(("gc", name))
        elif INTERRUPT_ANNOTATION in (event.obj["metadata"].get("annotations") or {}):
            self.enqueue(("interrupt", name))

    async def reconcile(self, item: Any) -> None:
        action, name = item
        if action == "gc":
            for pod in list(self.api.store.items(self.pods.key)):
                if pod["spec"].get("nodeName") == name:
                    meta = pod["metadata"]
                    self.api.delete(self.pods, meta["namespace"], meta["name"], grace=0)
        elif name not in self._interrupting:
            self._interrupting.add(name)
            task = asyncio.create_task(self._interrupt(name))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _pods_on(self, node: str) -> list[dict[str, Any]]:
        return [p for p in self.api.store.items(self.pods.key) if p["spec"].get("nodeName") == node]

    async def _interrupt(self, name: str) -> None:
        node = self.api.get(self.rt, "", name)
        raw = (node["metadata"].get("annotations") or {}).get(INTERRUPT_ANNOTATION, "")
        notice = float(raw) if raw.strip() else self.pool.notice_seconds
        group = next(
            (g for g in self.pool.groups if g.name == node["metadata"]["labels"].get(GROUP_LABEL)),
            None,
        )
        node.setdefault("spec", {}).setdefault("taints", []).append(dict(TERMINATION_TAINT))
        self.api.update(self.rt, "", name, node, self.manager)
        message = f"node {name} is being reclaimed (spot interruption): its pods are evicted in {notice:g}s"
        record(self.api, node, "Warning", "SpotInterruption", message, self.manager)
        for pod in self._pods_on(name):
            record(self.api, pod, "Warning", "SpotInterruption", message, self.manager)
        await asyncio.sleep(notice)
        for pod in self._pods_on(name):
            if not pod["metadata"].get("deletionTimestamp"):
                self._evict(pod)
        while self._pods_on(name):
            await asyncio.sleep(0.2)
        self.api.delete(self.rt, "", name)
        self._interrupting.discard(name)
        if group is not None:
            self._add_node(group)

    def _evict(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        fresh = self.api.get(self.pods, meta["namespace"], meta["name"])
        mark_disruption_target(
            self.api,
            self.pods,
            fresh,
            "TerminationByKubelet",
            "Pod was terminated in response to imminent node shutdown.",
            "kubelet",
        )
        self.api.delete(self.pods, meta["namespace"], meta["name"])
