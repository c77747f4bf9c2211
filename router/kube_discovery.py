"""Replicas from Kubernetes EndpointSlices, read with plain HTTP (list, then watch); the
same `follow` reads the service's adapter set (router/adapter_set.py).

No kubernetes client: one list and one watch of one resource need a few lines of aiohttp,
and the router image stays small. In a pod it uses the service account (token re-read on
every request, since projected tokens rotate; the cluster CA); elsewhere any API server
URL with an optional token (the local control plane in tests).

An endpoint whose `conditions.ready` is true gets requests; `terminating` marks it
draining (it finishes what it has, gets nothing new). `ready` unset means ready, as the
EndpointSlice API defines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from infleet.router.replicas import Endpoint, ReplicaSet

log = logging.getLogger("infleet.router.kube")
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SERVICE_LABEL = "kubernetes.io/service-name"
RETRY_SECONDS = 1.0
WATCH_SECONDS = 300  # the server ends each watch after this; we list again


@dataclass(frozen=True, slots=True)
class KubeAccess:
    server: str  # https://HOST:PORT
    token_file: Path | None = None
    ca_file: Path | None = None

    @classmethod
    def in_cluster(cls, token_file: Path | None = None, ca_file: Path | None = None) -> KubeAccess:
        """The API server of the pod's cluster; the token and CA from the service account's
        mount unless given (a projected token mounted elsewhere: operator/router.py)."""
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        host = f"[{host}]" if ":" in host else host
        token, ca = token_file or SA_DIR / "token", ca_file or SA_DIR / "ca.crt"
        return cls(f"https://{host}:{port}", token, ca)

    def headers(self) -> dict[str, str]:
        if self.token_file is None:
            return {}
        return {"Authorization": "Bearer " + self.token_file.read_text().strip()}

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))


def endpoints_of(slices: Iterable[dict[str, Any]], port_name: str) -> list[Endpoint]:
    """The replicas in a Service's EndpointSlices: one per address, on the named port."""
    found: dict[str, Endpoint] = {}
    for sl in slices:
        ports = sl.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name", "") == port_name), None)
        if port is None:
            continue
        for ep in sl.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            ready = cond.get("ready") is not False
            draining = bool(cond.get("terminating"))
            for address in ep.get("addresses") or []:
                host = f"[{address}]" if ":" in address else address
                name = (ep.get("targetRef") or {}).get("name") or address
                found[name] = Endpoint(
                    name, f"http://{host}:{port}", ready and not draining, draining
                )
    return list(found.values())


async def watch_endpoint_slices(
    replicas: ReplicaSet,
    access: KubeAccess,
    namespace: str,
    service: str,
    port_name: str = "http",
) -> None:
    """Forever: keep `replicas` equal to the Service's ready endpoints."""
    base = f"{access.server}/apis/discovery.k8s.io/v1/namespaces/{quote(namespace)}/endpointslices"
    await follow(
        access,
        base,
        f"labelSelector={quote(f'{SERVICE_LABEL}={service}')}",
        lambda slices: replicas.sync(endpoints_of(slices, port_name)),
        f"EndpointSlices of {namespace}/{service}",
    )


OnChange = Callable[[list[dict[str, Any]]], None]


async def follow(access: KubeAccess, base: str, query: str, on_change: OnChange, what: str) -> None:
    """Forever: list the objects at `base?query`, then watch them; after each change hand
    every current object to `on_change`. A failed list or watch is retried; a watch the
    server ends (timeout, 410 Gone) starts over with a fresh list."""
    connector = aiohttp.TCPConnector(ssl=access.ssl_context() or True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while True:
            try:
                await _list_and_watch(session, access, f"{base}?{query}", on_change)
            except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ValueError) as err:
                log.warning("watch of %s failed: %s", what, err)
                await asyncio.sleep(RETRY_SECONDS)


async def _list_and_watch(
    session: aiohttp.ClientSession, access: KubeAccess, url: str, on_change: OnChange
) -> None:
    async with session.get(url, headers=access.headers()) as resp:
        resp.raise_for_status()
        listing = await resp.json()
    objects = {o["metadata"]["name"]: o for o in listing.get("items") or []}
    on_change(list(objects.values()))
    version = listing["metadata"]["resourceVersion"]
    url += (
        f"&watch=1&resourceVersion={version}"
        f"&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}"
    )
    async with session.get(url, headers=access.headers()) as resp:
        resp.raise_for_status()
        async for line in resp.content:
            if not line.strip():
                continue
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                log.info("watch ended by the API server: %s", obj.get("message"))
                return  # e.g. 410 Gone: list again
            if kind == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                objects.pop(name, None)
            else:
                objects[name] = obj
            on_change(list(objects.values()))
