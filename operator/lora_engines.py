"""Talking to the replicas' engines about adapters: which they serve, load, unload.

The vLLM-compatible API every LoRA-capable engine kind offers: GET /v1/models (adapters
are the cards with a `parent`), POST /v1/load_lora_adapter {lora_name, lora_path} and
/v1/unload_lora_adapter {lora_name}, with the service's admin key as the bearer token
(and, for the bundled engine, the adapter's tenant in the load request).
A replica that does not answer counts as not serving the adapter; it is tried again on
the next reconcile (its pod events and the periodic tick bring one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from infleet.autoscaler.kube_view import scrape_targets
from infleet.operator.lora_names import SYNC_PORT_NAME

log = logging.getLogger(__name__)
TIMEOUT_S = 30.0  # a load downloads the adapter from the store first
Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Replica:
    name: str
    url: str  # http://IP:PORT


def ready_replicas(pods: list[Obj]) -> list[Replica]:
    """Ready pods with an IP, as the base URL of their adapter API: the lora-sync sidecar's
    port where the pod has one (vLLM, SGLang), else the engine's (the bundled engine)."""
    by_name = {(p.get("metadata") or {}).get("name"): p for p in pods}
    out = []
    for target in scrape_targets(pods):
        url = target.url.removesuffix("/metrics")
        port = _sync_port(by_name.get(target.pod) or {})
        if port is not None:
            url = f"{url.rsplit(':', 1)[0]}:{port}"
        out.append(Replica(target.pod, url))
    return out


def _sync_port(pod: Obj) -> int | None:
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == SYNC_PORT_NAME:
                return int(port["containerPort"])
    return None


class LoadRefused(Exception):
    """The engine answered 400: the adapter does not fit it (its message says why). Other
    answers (401/403: a key out of step; 409: the engine is full) leave it not loaded, to
    be tried again."""


class EngineClient:
    def __init__(self, admin_key: str | None, timeout: float = TIMEOUT_S) -> None:
        headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def adapters(self, replica: Replica) -> dict[str, str] | None:
        """Served name -> root (its lora_path) of the adapters it serves; None: no answer."""
        try:
            resp = self._http.get(f"{replica.url}/v1/models")
            resp.raise_for_status()
            cards = resp.json().get("data") or []
        except (httpx.HTTPError, ValueError) as err:
            log.info("%s: /v1/models: %s", replica.name, type(err).__name__)
            return None
        return {c["id"]: c.get("root", "") for c in cards if c.get("parent")}

    def load(self, replica: Replica, name: str, path: str, tenant: str) -> bool:
        """True when loaded; False when the replica did not answer; LoadRefused on 4xx.
        `tenant` (beside vLLM's fields) makes it that tenant's adapter on the engine."""
        body = {"lora_name": name, "lora_path": path, "tenant": tenant}
        return self._post(replica, "load_lora_adapter", body)

    def unload(self, replica: Replica, name: str) -> bool:
        """True when it no longer serves `name` (404: it did not)."""
        try:
            return self._post(replica, "unload_lora_adapter", {"lora_name": name})
        except LoadRefused:
            return False

    def _post(self, replica: Replica, what: str, body: Obj) -> bool:
        try:
            resp = self._http.post(f"{replica.url}/v1/{what}", json=body)
        except httpx.HTTPError as err:
            log.info("%s: %s: %s", replica.name, what, type(err).__name__)
            return False
        if resp.status_code == 404 and what == "unload_lora_adapter":
            return True
        if resp.status_code == 400:  # the adapter itself is refused
            raise LoadRefused(_message(resp))
        if resp.status_code >= 300:
            log.info("%s: %s: HTTP %d", replica.name, what, resp.status_code)
            return False
        return True


def _message(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}"
