"""kube-controller-manager's root CA publisher: a `kube-root-ca.crt` ConfigMap in every
namespace, holding the CA that signs the API server's certificate. Pods that project a
service account token take their `ca.crt` from it (the router's discovery does)."""

from __future__ import annotations

from typing import Any

from infleet.localplane.controller import Controller
from infleet.localplane.crud import Api
from infleet.localplane.store import WatchEvent

NAME = "kube-root-ca.crt"
NAMESPACES = ("", "namespaces")
CONFIG_MAPS = ("", "configmaps")


class RootCaPublisher(Controller):
    manager = "root-ca-cert-publisher"

    def __init__(self, api: Api, ca_pem: str) -> None:
        super().__init__(api)
        self.ca_pem = ca_pem

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == NAMESPACES and event.type != "DELETED":
            self.enqueue(meta["name"])
        elif event.key == CONFIG_MAPS and meta["name"] == NAME:
            self.enqueue(meta["namespace"])  # deleted or edited: put back

    def resync_items(self) -> list[Any]:
        return [ns["metadata"]["name"] for ns in self.api.store.items(NAMESPACES)]

    async def reconcile(self, item: Any) -> None:
        ns = self.api.store.peek(NAMESPACES, "", item)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return  # the namespace controller is emptying it
        current = self.api.store.peek(CONFIG_MAPS, item, NAME)
        if current is not None and (current.get("data") or {}).get("ca.crt") == self.ca_pem:
            return
        rt = self.api.registry.get("", "v1", "configmaps")
        body = {"apiVersion": "v1", "kind": "ConfigMap"}
        body |= {"metadata": {"name": NAME, "namespace": item}, "data": {"ca.crt": self.ca_pem}}
        if current is None:
            self.api.create(rt, item, body, self.manager)
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.api.update(rt, item, NAME, body, self.manager)
