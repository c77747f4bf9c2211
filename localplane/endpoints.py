"""Services -> EndpointSlices (and legacy Endpoints) of the pods they select."""

from __future__ import annotations

import hashlib
from typing import Any

from infleet.localplane.controller import Controller
from infleet.localplane.replicasets import is_ready
from infleet.localplane.selectors import matches, selector_requirements
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

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == self.svc.key:
            self.enqueue((meta["namespace"], meta["name"]))
        elif event.key == self.pods.key:
            labels = [
                meta.get("labels") or {},
                ((event.old or {}).get("metadata") or {}).get("labels") or {},
            ]
            for svc in self.api.store.items(self.svc.key, meta["namespace"]):
                sel = svc["spec"].get("selector")
                if sel and any(
                    matches(selector_requirements({"matchLabels": sel}), lb) for lb in labels
                ):
                    self.enqueue((meta["namespace"], svc["metadata"]["name"]))

    def resync_items(self) -> list[Any]:
        return [
            (s["metadata"]["namespace"], s["metadata"]["name"])
            for s in self.api.store.items(self.svc.key)
        ]

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        svc = self.api.store.peek(self.svc.key, ns, name)
        slice_name = f"{name}-{hashlib.sha1(name.encode()).hexdigest()[:5]}"
        if svc is None or not svc["spec"].get("selector"):
            return  # the GC removes what the Service owned
        reqs = selector_requirements({"matchLabels": svc["spec"]["selector"]})
        pods = [
            p
            for p in self.api.store.items(self.pods.key, ns)
            if matches(reqs, p["metadata"].get("labels"))
            and p.get("status", {}).get("podIP")
            and p["status"].get("phase") not in ("Succeeded", "Failed")
        ]
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
        current = self.api.store.get(rt.key, ns, name)
        if current is None:
            self.api.create(rt, ns, body, self.manager)
            return
        merged = {**current, **{k: v for k, v in body.items() if k != "metadata"}}
        merged["metadata"].update(
            {k: body["metadata"][k] for k in ("labels", "ownerReferences") if k in body["metadata"]}
        )
        self.api.update(rt, ns, name, merged, self.manager)
