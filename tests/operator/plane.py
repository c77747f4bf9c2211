"""An emulated API server (infleet.localplane, no kubelet) in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infleet.api import GROUP, PLURAL, VERSION
from infleet.api.crds import all_crds
from infleet.operator.cache import Snapshot
from infleet.operator.names import MANAGED_BY, SERVICE_LABEL


@contextmanager
def running_plane(workdir: Path) -> Iterator[Path]:
    """Yields a kubeconfig for a fresh API server with our CRDs installed."""
    from kubernetes import client

    from infleet.localplane.plane import LocalPlane, PlaneConfig
    from infleet.operator.kube import load_config

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    plane = LocalPlane(PlaneConfig(workloads=False, workdir=workdir))
    asyncio.run_coroutine_threadsafe(plane.start(), loop).result(30)
    try:
        kubeconfig = plane.write_kubeconfig(workdir / "kubeconfig")
        extensions = client.ApiextensionsV1Api(load_config(str(kubeconfig)))
        for crd in all_crds():
            extensions.create_custom_resource_definition(crd)
        yield kubeconfig
    finally:
        asyncio.run_coroutine_threadsafe(plane.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def snapshot(api_client: Any, namespace: str, name: str) -> Snapshot:
    """What the operator's caches would hold for one service, read from the API server."""
    import json

    from kubernetes import client

    from infleet.operator.cache import CHILD_KINDS, trimmed

    custom = client.CustomObjectsApi(api_client)
    parent = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    lists = {
        "Deployment": apps.list_namespaced_deployment,
        "Service": core.list_namespaced_service,
        "ConfigMap": core.list_namespaced_config_map,
        "PodDisruptionBudget": client.PolicyV1Api(api_client).list_namespaced_pod_disruption_budget,
        "NetworkPolicy": client.NetworkingV1Api(api_client).list_namespaced_network_policy,
        "ServiceAccount": core.list_namespaced_service_account,
        "Role": client.RbacAuthorizationV1Api(api_client).list_namespaced_role,
        "RoleBinding": client.RbacAuthorizationV1Api(api_client).list_namespaced_role_binding,
    }
    children = []
    for group, version, plural, kind in CHILD_KINDS:
        selector = f"{MANAGED_BY}=infleet,{SERVICE_LABEL}={name}"  # the operator's watch
        if kind not in lists:  # a custom kind (LeaderWorkerSet): none without its CRD
            try:
                response = custom.list_namespaced_custom_object(
                    group, version, namespace, plural, label_selector=selector,
                    _preload_content=False,
                )  # fmt: skip
            except client.ApiException as err:
                if err.status == 404:
                    continue
                raise
        else:
            response = lists[kind](namespace, label_selector=selector, _preload_content=False)
        api_version = f"{group}/{version}" if group else version
        items = json.loads(response.data)["items"]
        children += [trimmed(item, kind, api_version) for item in items]
    return Snapshot(parent, children, pods=[])
