"""LocalPlane: the API server, its built-in controllers and kubeconfig, in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from infleet.localplane.controller import Controller
from infleet.localplane.crds import CrdRegistrar
from infleet.localplane.credentials import issue
from infleet.localplane.crud import Api
from infleet.localplane.gc import GarbageCollector, NamespaceController
from infleet.localplane.resources import Registry
from infleet.localplane.root_ca import RootCaPublisher
from infleet.localplane.server import ApiServer
from infleet.localplane.store import Store, WatchEvent

log = logging.getLogger(__name__)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(slots=True)
class PlaneConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    bookmark_interval: float = 30.0
    history: int = 20000
    workdir: Path | None = None  # pod logs and volumes; a temp dir when None
    restart_backoff: float = 10.0  # first CrashLoopBackOff delay, doubling to 5 min
    node_pool: Any = None  # a NodePool; the default pool when None
    workloads: bool = True  # run the scheduler, kubelet, workload controllers and proxy
    # Loopback networks for pod IPs and Service ClusterIPs; planes running side by side
    # on one machine need different ones (the tests pick random ones).
    pod_network: str = "127.1.0.0/16"
    service_network: str = "127.2.0.0/16"
    hollow_pods: bool = False  # pods run no process, Running+Ready at once (scale tests)
    # Serve the LeaderWorkerSet CRD and run its controller (multi-node replicas), as a
    # cluster with LWS installed; False: a cluster without it.
    leader_worker_set: bool = True


class LocalPlane:
    def __init__(self, config: PlaneConfig | None = None) -> None:
        self.config = config or PlaneConfig()
        self.store = Store(history=self.config.history)
        self.registry = Registry()
        self.api = Api(self.store, self.registry)
        self.api.admission.service_ips = (
            str(ip) for ip in ipaddress.ip_network(self.config.service_network).hosts()
        )
        # A CA, serving certificate and bearer token of this plane alone (see credentials.py).
        self.credentials = issue(self.config.host)
        self.server = ApiServer(
            self.api, self.credentials.token, bookmark_interval=self.config.bookmark_interval
        )
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.workdir = self.config.workdir
        self.controllers: list[Controller] = [
            CrdRegistrar(self.api, self.registry, self.store),
            GarbageCollector(self.api),
            NamespaceController(self.api),
            RootCaPublisher(self.api, self.credentials.ca_pem.decode()),
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        self.kubelet: Any = None
        self.nodes: Any = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.store.subscribe(self._dispatch)
        for ns in SYSTEM_NAMESPACES:
            self.api.create(
                self.registry.get("", "v1", "namespaces"),
                "",
                {"metadata": {"name": ns}},
                "kube-apiserver",
            )

    def _dispatch(self, event: WatchEvent) -> None:
        for c in self.controllers:
            c.on_event(event)

    async def start(self) -> str:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="infleet-localplane-")
            self.workdir = Path(self._tmp.name)
        self._runner = web.AppRunner(self.server.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.config.host,
            self.config.port,
            ssl_context=self.credentials.server_context(),
        )
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"https://{self.config.host}:{port}"
        if self.config.workloads:
            from infleet.localplane.workloads import add_workloads

            add_workloads(self)
        self._tasks = [asyncio.create_task(c.run()) for c in self.controllers]
        return self.url

    def add_controller(self, controller: Controller) -> None:
        self.controllers.append(controller)
        if self._tasks:
            self._tasks.append(asyncio.create_task(controller.run()))

    async def stop(self) -> None:
        for hook in self.on_stop:
            await hook()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._runner is not None:
            await self._runner.cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "infleet-local",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": self.credentials.ca_data,
                    },
                }
            ],
            "users": [{"name": "infleet-local", "user": {"token": self.credentials.token}}],
            "contexts": [
                {
                    "name": "infleet-local",
                    "context": {
                        "cluster": "infleet-local",
                        "user": "infleet-local",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "infleet-local",
        }

    def write_kubeconfig(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        path.chmod(0o600)
        return path
