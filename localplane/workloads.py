"""Wires the workload machinery into a LocalPlane: nodes, scheduler, controllers,
process kubelet and service proxy (and LeaderWorkerSet, its CRD and controller)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from infleet.localplane.deployments import DeploymentController
from infleet.localplane.disruption import DisruptionController
from infleet.localplane.endpoints import EndpointsController
from infleet.localplane.jobs import JobController
from infleet.localplane.kubelet import Kubelet
from infleet.localplane.leaderworkersets import LeaderWorkerSetController
from infleet.localplane.lws_crd import LWS_CRD
from infleet.localplane.nodes import NodeManager, default_pool
from infleet.localplane.proxy import ServiceProxy
from infleet.localplane.replicasets import ReplicaSetController
from infleet.localplane.scheduler import Scheduler

if TYPE_CHECKING:
    from infleet.localplane.plane import LocalPlane


def add_workloads(plane: LocalPlane) -> None:
    api = plane.api
    assert plane.workdir is not None
    nodes = NodeManager(api, plane.config.node_pool or default_pool())
    kubelet = Kubelet(
        api,
        plane.workdir,
        plane.url,
        plane.config.restart_backoff,
        plane.config.pod_network,
        hollow=plane.config.hollow_pods,
        token=plane.credentials.token,
    )
    proxy = ServiceProxy(api)
    disruption = DisruptionController(api)
    scheduler = Scheduler(api)
    for c in (
        nodes,
        scheduler,
        ReplicaSetController(api),
        DeploymentController(api),
        JobController(api),
        EndpointsController(api),
        kubelet,
        proxy,
        disruption,
    ):
        plane.add_controller(c)
    plane.server.sub_handlers[("", "pods", "log", "GET")] = kubelet.logs
    plane.server.sub_handlers[("", "pods", "eviction", "POST")] = disruption.evict
    plane.server.sub_handlers[("", "pods", "binding", "POST")] = scheduler.bind
    if plane.config.leader_worker_set:
        plane.add_controller(LeaderWorkerSetController(api))
        crds = api.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        api.create(crds, "", LWS_CRD, "lws-install")
    nodes.create_pool()
    plane.on_stop.append(kubelet.shutdown)
    plane.on_stop.append(proxy.shutdown)
    plane.kubelet, plane.nodes = kubelet, nodes
