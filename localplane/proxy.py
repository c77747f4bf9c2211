"""Service proxy: each Service's ClusterIP (a 127.2.x.y loopback address) listens on its
ports and spreads connections round-robin over the ready endpoints, so any Service (and
so any InferenceService's URL) is reachable from this machine. Like kube-proxy, open
connections survive an endpoint turning unready; new ones go elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from infleet.localplane.controller import Controller
from infleet.localplane.store import WatchEvent

log = logging.getLogger(__name__)
Addr = tuple[str, int]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class ServiceProxy(Controller):
    manager = "kube-proxy"

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.svc = api.registry.get("", "v1", "services")
        self.slices = api.registry.get("discovery.k8s.io", "v1", "endpointslices")
        self.servers: dict[Addr, asyncio.Server] = {}
        self.backends: dict[Addr, list[Addr]] = {}
        self.owners: dict[tuple[str, str], set[Addr]] = {}
        self._rr = itertools.count()

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == self.svc.key:
            self.enqueue((meta["namespace"], meta["name"]))
        elif event.key == self.slices.key:
            svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
            if svc:
                self.enqueue((meta["namespace"], svc))

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        svc = self.api.store.peek(self.svc.key, ns, name)
        wanted: dict[Addr, list[Addr]] = {}
        ip = (svc or {}).get("spec", {}).get("clusterIP")
        if svc is not None and ip and ip != "None":
            slices = [
                s
                for s in self.api.store.items(self.slices.key, ns)
                if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name
            ]
            for port in svc["spec"].get("ports") or []:
                if port.get("protocol", "TCP") != "TCP":
                    continue
                targets = []
                for sl in slices:
                    number = next(
                        (
                            p["port"]
                            for p in sl.get("ports") or []
                            if p.get("name", "") == port.get("name", "")
                        ),
                        None,
                    )
                    if number is None:
                        continue
                    targets += [
                        (ep["addresses"][0], number)
                        for ep in sl.get("endpoints") or []
                        if ep.get("conditions", {}).get("ready")
                    ]
                wanted[(ip, port["port"])] = targets
        for addr in self.owners.get(item, set()) - set(wanted):
            await self._close(addr)
        for addr, targets in wanted.items():
            self.backends[addr] = targets
            if addr not in self.servers:
                try:
                    self.servers[addr] = await asyncio.start_server(
                        lambda r, w, a=addr: self._handle(r, w, a), addr[0], addr[1]
                    )
                except OSError as err:
                    log.warning("service %s/%s: cannot listen on %s:%s: %s", ns, name, *addr, err)
        self.owners[item] = set(wanted)
        if svc is not None and ip and ip != "None":
            self._publish_address(svc, ip)

    def _publish_address(self, svc: dict[str, Any], ip: str) -> None:
        """Every Service gets its ClusterIP as load-balancer ingress: on this machine the
        proxy is the load balancer, and clients (status.url) find the address there."""
        ports = [
            {"port": p["port"], "protocol": p.get("protocol", "TCP")}
            for p in svc["spec"].get("ports") or []
        ]
        ingress = [{"ip": ip, "ipMode": "Proxy", "ports": ports}]
        if (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") == ingress:
            return
        fresh = self.api.store.get(
            self.svc.key, svc["metadata"]["namespace"], svc["metadata"]["name"]
        )
        fresh.setdefault("status", {})["loadBalancer"] = {"ingress": ingress}
        self.api.update(
            self.svc,
            fresh["metadata"]["namespace"],
            fresh["metadata"]["name"],
            fresh,
            "service-controller",
            subresource="status",
        )

    async def _close(self, addr: Addr) -> None:
        server = self.servers.pop(addr, None)
        self.backends.pop(addr, None)
        if server is not None:
            server.close()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, addr: Addr
    ) -> None:
        targets = self.backends.get(addr) or []
        if not targets:
            writer.close()  # no ready endpoint: refuse, as kube-proxy rejects
            return
        target = targets[next(self._rr) % len(targets)]
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def shutdown(self) -> None:
        for addr in list(self.servers):
            await self._close(addr)
