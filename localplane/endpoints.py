"""Services -> EndpointSlices (and legacy Endpoints) of the pods they select."""

from __future__ import annotations

import hashlib
from typing import Any

from infleet.localplane.clone import clone
from infleet.localplane.controller import Controller
from infleet.localplane.replicasets import is_ready
from infleet.localplane.selectors import SelectorIndex
from infleet.localplane.store import WatchEvent

Obj = dict[str, Any]
SERVICE_LABEL = "kubernetes.io/service-name"


def target_port(port: Obj, pod: Obj) -> int | None:
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    if str(target).isdigit():
        return int(target)
    for c in pod["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return p["containerPort"]
    return None


class EndpointsController(Controller):
    manager = "endpointslice-controller.k8s.io"

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.svc = api.registry.get("", "v1", "services")
        self.pods = api.registry.get("", "v1", "pods")
        self.slices = api.registry.get("discovery.k8s.io", "v1", "endpointslices")
        self.eps = api.registry.get("", "v1", "endpoints")
        self.selectors = SelectorIndex()  # the Services' selectors, from their events
        for svc in api.store.unordered(self.svc.key):
            self._file(svc, "ADDED")

    def _file(self, svc: Obj, event_type: str) -> None:
        meta, selector = svc["metadata"], svc["spec"].get("selector")
        if event_type == "DELETED" or not selector:  # no selector: no endpoints managed
            self.selectors.drop(meta["namespace"], meta["name"])
        else:
            self.selectors.put(meta["namespace"], meta["name"], {"matchLabels": selector})

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == self.svc.key:
            self._file(event.obj, event.type)
            self.enqueue((meta["namespace"], meta["name"]))
        elif event.key == self.pods.key:
            ns = meta["namespace"]
            names = self.selectors.matching(ns, meta.get("labels"))
            if event.old is not None:
                names |= self.selectors.matching(ns, event.old["metadata"].get("labels"))
            for name in names:
                self.enqueue((ns, name))

    def resync_items(self) -> list[Any]:
        return [
            (s["metadata"]["namespace"], s["metadata"]["name"])
            for s in self.api.store.unordered(self.svc.key)
        ]

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        svc = self.api.store.peek(self.svc.key, ns, name)
        slice_name = f"{name}-{hashlib.sha1(name.encode()).hexdigest()[:5]}"
        if svc is None or not svc["spec"].get("selector"):
            return  # the GC removes what the Service owned
        pods = sorted(
            (
                p
                for p in self.api.store.labeled(self.pods.key, ns, svc["spec"]["selector"])
                if p.get("status", {}).get("podIP")
                and p["status"].get("phase") not in ("Succeeded", "Failed")
            ),
            key=lambda p: p["metadata"]["name"],
        )
        ports = svc["spec"].get("ports") or []
        endpoints, ready_addrs, unready_addrs = [], [], []
        for p in pods:
            terminating = bool(p["metadata"].get("deletionTimestamp"))
            ready = is_ready(p) and not terminating
            endpoints.append(
                {
                    "addresses": [p["status"]["podIP"]],
                    "conditions": {
                        "ready": ready,
                        "serving": is_ready(p),
                        "terminating": terminating,
                    },
                    "nodeName": p["spec"].get("nodeName"),
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": ns,
                        "name": p["metadata"]["name"],
                        "uid": p["metadata"]["uid"],
                    },
                }
            )
            addr = {
                "ip": p["status"]["podIP"],
                "nodeName": p["spec"].get("nodeName"),
                "targetRef": endpoints[-1]["targetRef"],
            }
            (ready_addrs if ready else unready_addrs).append(addr)
        slice_ports = []
        for port in ports:
            number = next((n for p in pods if (n := target_port(port, p)) is not None), None)
            if number is not None:
                slice_ports.append(
                    {
                        "name": port.get("name", ""),
                        "port": number,
                        "protocol": port.get("protocol", "TCP"),
                    }
                )
        owner = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": name,
                "uid": svc["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        self._put(
            self.slices,
            ns,
            slice_name,
            {
                "metadata": {
                    "name": slice_name,
                    "namespace": ns,
                    "ownerReferences": owner,
                    "labels": {
                        SERVICE_LABEL: name,
                        "endpointslice.kubernetes.io/managed-by": self.manager,
                    },
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": slice_ports,
            },
        )
        subset: Obj = {"ports": slice_ports}
        if ready_addrs:
            subset["addresses"] = ready_addrs
        if unready_addrs:
            subset["notReadyAddresses"] = unready_addrs
        self._put(
            self.eps,
            ns,
            name,
            {
                "metadata": {"name": name, "namespace": ns, "ownerReferences": owner},
                "subsets": [subset] if pods else [],
            },
        )

    def _put(self, rt: Any, ns: str, name: str, body: Obj) -> None:
        stored = self.api.store.peek(rt.key, ns, name)
        if stored is None:
            self.api.create(rt, ns, body, self.manager)
            return
        if _holds(stored, body):
            return  # most reconciles (resyncs, unrelated pod writes) change nothing
        current = clone(stored)
        merged = {**current, **{k: v for k, v in body.items() if k != "metadata"}}
        merged["metadata"].update(
            {k: body["metadata"][k] for k in ("labels", "ownerReferences") if k in body["metadata"]}
        )
        self.api.update(rt, ns, name, merged, self.manager)


def _holds(stored: Obj, body: Obj) -> bool:
    """Whether the stored object already has everything `_put` would write."""
    meta = stored["metadata"]
    return all(stored.get(k) == v for k, v in body.items() if k != "metadata") and all(
        meta.get(k) == body["metadata"][k]
        for k in ("labels", "ownerReferences")
        if k in body["metadata"]
    )
