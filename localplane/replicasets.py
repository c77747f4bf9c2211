"""The ReplicaSet controller: keeps the number of live pods at spec.replicas."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from infleet.localplane.clone import clone
from infleet.localplane.controller import Controller
from infleet.localplane.events import record
from infleet.localplane.store import WatchEvent

Obj = dict[str, Any]


def controller_of(obj: Obj) -> Obj | None:
    return next(
        (r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None
    )


def is_ready(pod: Obj) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def ready_since(pod: Obj) -> float | None:
    for c in pod.get("status", {}).get("conditions") or []:
        if c["type"] == "Ready" and c["status"] == "True":
            stamp = datetime.strptime(c["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")
            return stamp.replace(tzinfo=timezone.utc).timestamp()
    return None


def is_active(pod: Obj) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and pod.get("status", {}).get(
        "phase"
    ) not in ("Succeeded", "Failed")


def _deletion_rank(pod: Obj) -> tuple[int, int, int, str]:
    """Pods to remove first: unscheduled, then not running, then not ready, newest first."""
    status = pod.get("status", {})
    return (
        1 if pod["spec"].get("nodeName") else 0,
        1 if status.get("phase") == "Running" else 0,
        1 if is_ready(pod) else 0,
        "".join(chr(255 - ord(c)) for c in pod["metadata"]["creationTimestamp"]),
    )


class ReplicaSetController(Controller):
    manager = "replicaset-controller"

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.rs = api.registry.get("apps", "v1", "replicasets")
        self.pods = api.registry.get("", "v1", "pods")

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == self.rs.key:
            self.enqueue((meta["namespace"], meta["name"]))
        elif event.key == self.pods.key:
            owner = controller_of(event.obj)
            if owner and owner.get("kind") == "ReplicaSet":
                self.enqueue((meta["namespace"], owner["name"]))

    def resync_items(self) -> list[Any]:
        return [
            (r["metadata"]["namespace"], r["metadata"]["name"])
            for r in self.api.store.items(self.rs.key)
        ]

    def _owned(self, rs: Obj) -> list[Obj]:
        uid = rs["metadata"]["uid"]
        return [
            p
            for p in self.api.store.owned_by(uid, self.pods.key)
            if (controller_of(p) or {}).get("uid") == uid
        ]

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        rs = self.api.store.peek(self.rs.key, ns, name)  # read-only: writes send new dicts
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        owned = self._owned(rs)
        active = [p for p in owned if is_active(p)]
        diff = rs["spec"].get("replicas", 1) - len(active)
        if diff > 0:
            for _ in range(min(diff, 50)):  # burst limit, like the real controller's slow start
                self._create_pod(rs)
        elif diff < 0:
            for pod in sorted(active, key=_deletion_rank)[:-diff]:
                self.api.delete(self.pods, ns, pod["metadata"]["name"])
                record(
                    self.api,
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {pod['metadata']['name']}",
                    self.manager,
                )
        self._update_status(rs, [p for p in self._owned(rs) if is_active(p)])

    def _create_pod(self, rs: Obj) -> None:
        template = clone(rs["spec"].get("template") or {})
        meta = template.get("metadata") or {}
        pod = {
            "metadata": {
                "generateName": f"{rs['metadata']['name']}-",
                "namespace": rs["metadata"]["namespace"],
                "labels": meta.get("labels") or {},
                "annotations": meta.get("annotations") or {},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": rs["metadata"]["name"],
                        "uid": rs["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }
        created = self.api.create(self.pods, rs["metadata"]["namespace"], pod, self.manager)
        record(
            self.api,
            rs,
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {created['metadata']['name']}",
            self.manager,
        )

    def _update_status(self, rs: Obj, active: list[Obj]) -> None:
        min_ready = rs["spec"].get("minReadySeconds", 0)
        now = datetime.now(timezone.utc).timestamp()
        ready = [p for p in active if is_ready(p)]
        available = [p for p in ready if (ready_since(p) or now) + min_ready <= now]
        if len(available) < len(ready):  # look again when the rest become available
            asyncio.get_running_loop().call_later(
                min_ready, self.enqueue, (rs["metadata"]["namespace"], rs["metadata"]["name"])
            )
        selector_labels = (rs["spec"].get("selector") or {}).get("matchLabels") or {}
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1
                for p in active
                if selector_labels.items() <= (p["metadata"].get("labels") or {}).items()
            ),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if rs.get("status") != status:
            self.api.update(
                self.rs,
                rs["metadata"]["namespace"],
                rs["metadata"]["name"],
                {**rs, "status": status},
                self.manager,
                subresource="status",
            )
