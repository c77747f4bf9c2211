"""The Deployment controller: a ReplicaSet per pod template, rolled by strategy.

RollingUpdate keeps at most replicas+maxSurge pods and at least replicas-maxUnavailable
available ones while the new ReplicaSet grows and the old ones shrink; Recreate empties
the old ReplicaSets first. Old ReplicaSets beyond revisionHistoryLimit are deleted.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from infleet.localplane.clone import clone
from infleet.localplane.controller import Controller
from infleet.localplane.events import record
from infleet.localplane.replicasets import controller_of
from infleet.localplane.store import WatchEvent, now_rfc3339

Obj = dict[str, Any]
REVISION = "deployment.kubernetes.io/revision"


def template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the real controller's safe alphabet
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def resolve(value: int | str, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    pct = float(str(value).rstrip("%")) * total / 100
    return math.ceil(pct) if round_up else math.floor(pct)


def _spec_n(rs: Obj) -> int:
    return rs["spec"].get("replicas", 0)


def _avail(rs: Obj) -> int:
    """Available pods, never more than the spec now asks for: the status lags a
    scale-down, and counting pods about to go would take too many down at once."""
    return min(rs.get("status", {}).get("availableReplicas", 0), _spec_n(rs))


class DeploymentController(Controller):
    manager = "deployment-controller"

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.deploy = api.registry.get("apps", "v1", "deployments")
        self.rs = api.registry.get("apps", "v1", "replicasets")
        # uid -> (generation, pod-template-hash): the template only changes with the
        # generation, and hashing it on every resync of every Deployment was a tenth
        # of the plane's CPU at 1,000 Deployments.
        self._hashes: dict[str, tuple[int, str]] = {}

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == self.deploy.key:
            if event.type == "DELETED":
                self._hashes.pop(meta["uid"], None)
            self.enqueue((meta["namespace"], meta["name"]))
        elif event.key == self.rs.key:
            owner = controller_of(event.obj)
            if owner and owner.get("kind") == "Deployment":
                self.enqueue((meta["namespace"], owner["name"]))

    def resync_items(self) -> list[Any]:
        return [
            (d["metadata"]["namespace"], d["metadata"]["name"])
            for d in self.api.store.items(self.deploy.key)
        ]

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        # Read-only stored objects: every write below sends a new dict, so nothing here
        # is cloned unless it changes (cloning each owned ReplicaSet on every resync
        # was a fifth of the plane's CPU at 200 services).
        d = self.api.store.peek(self.deploy.key, ns, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        uid = d["metadata"]["uid"]
        owned = [
            r
            for r in self.api.store.owned_by(uid, self.rs.key)
            if (controller_of(r) or {}).get("uid") == uid
        ]
        template = d["spec"].get("template") or {}
        generation = d["metadata"].get("generation", 1)
        known = self._hashes.get(uid)
        if known is not None and known[0] == generation:
            h = known[1]
        else:
            h = template_hash(template)
            self._hashes[uid] = (generation, h)
        new = next(
            (r for r in owned if r["metadata"].get("labels", {}).get("pod-template-hash") == h),
            None,
        )
        olds = sorted(
            (r for r in owned if r is not new), key=lambda r: r["metadata"]["creationTimestamp"]
        )
        if not d["spec"].get("paused"):
            new = self._create_rs(d, h, olds) if new is None else new
            self._scale(d, new, olds)
            self._cleanup(d, olds)
        self._status(d, new, olds)

    def _create_rs(self, d: Obj, h: str, olds: list[Obj]) -> Obj:
        template = clone(d["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
        selector = clone(d["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = h
        revision = 1 + max(
            (int(o["metadata"].get("annotations", {}).get(REVISION, 0)) for o in olds), default=0
        )
        rs = {
            "metadata": {
                "name": f"{d['metadata']['name']}-{h}",
                "namespace": d["metadata"]["namespace"],
                "labels": template["metadata"]["labels"],
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(d["spec"]["replicas"]),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": d["metadata"]["name"],
                        "uid": d["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }
        created = self.api.create(self.rs, d["metadata"]["namespace"], rs, self.manager)
        record(
            self.api,
            d,
            "Normal",
            "ScalingReplicaSet",
            f"Created new replica set {created['metadata']['name']}",
            self.manager,
        )
        return created

    def _set_replicas(self, d: Obj, rs: Obj, n: int) -> None:
        if _spec_n(rs) == n:
            return
        verb = "up" if n > _spec_n(rs) else "down"
        scaled = {**rs, "spec": {**rs["spec"], "replicas": n}}
        self.api.update(
            self.rs, rs["metadata"]["namespace"], rs["metadata"]["name"], scaled, self.manager
        )
        record(
            self.api,
            d,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {verb} replica set {rs['metadata']['name']} to {n}",
            self.manager,
        )

    def _scale(self, d: Obj, new: Obj, olds: list[Obj]) -> None:
        desired = d["spec"].get("replicas", 1)
        strategy = d["spec"].get("strategy") or {}
        if strategy.get("type") == "Recreate":
            for o in olds:
                self._set_replicas(d, o, 0)
            if all(o.get("status", {}).get("replicas", 0) == 0 for o in olds):
                self._set_replicas(d, new, desired)
            return
        ru = strategy.get("rollingUpdate") or {}
        surge = resolve(ru.get("maxSurge", "25%"), desired, round_up=True)
        unavailable = resolve(ru.get("maxUnavailable", "25%"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        total = _spec_n(new) + sum(_spec_n(o) for o in olds)
        if _spec_n(new) > desired or not olds:
            self._set_replicas(d, new, desired)
        elif _spec_n(new) < desired:
            room = desired + surge - total
            if room > 0:
                self._set_replicas(d, new, _spec_n(new) + min(room, desired - _spec_n(new)))
        # Take old pods down while enough stay available: unhealthy ones freely.
        allowed = max(0, _avail(new) + sum(_avail(o) for o in olds) - (desired - unavailable))
        for o in olds:
            unhealthy = max(0, _spec_n(o) - _avail(o))
            healthy_cut = min(allowed, _spec_n(o) - unhealthy)
            allowed -= healthy_cut
            self._set_replicas(d, o, _spec_n(o) - unhealthy - healthy_cut)

    def _cleanup(self, d: Obj, olds: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [o for o in olds if _spec_n(o) == 0 and o.get("status", {}).get("replicas", 0) == 0]
        for o in idle[: max(0, len(idle) - limit)]:
            self.api.delete(self.rs, o["metadata"]["namespace"], o["metadata"]["name"])

    def _status(self, d: Obj, new: Obj | None, olds: list[Obj]) -> None:
        desired = d["spec"].get("replicas", 1)
        every = ([new] if new else []) + olds
        st = lambda k: sum(r.get("status", {}).get(k, 0) for r in every)  # noqa: E731
        updated = (new or {}).get("status", {}).get("replicas", 0)
        available = st("availableReplicas")
        ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        floor = desired - resolve(ru.get("maxUnavailable", "25%"), desired, round_up=False)
        complete = (
            updated == desired
            and (new or {}).get("status", {}).get("availableReplicas", 0) == desired
            and st("replicas") == desired
        )
        old_conds = {c["type"]: c for c in d.get("status", {}).get("conditions") or []}

        def cond(ctype: str, ok: bool, reason: str, message: str) -> Obj:
            prev = old_conds.get(ctype, {})
            status = "True" if ok else "False"
            moved = prev.get("status") != status or prev.get("reason") != reason
            stamp = now_rfc3339() if moved else prev["lastTransitionTime"]
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
            }

        new_name = (new or {}).get("metadata", {}).get("name", "")
        status = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": st("replicas"),
            "updatedReplicas": updated,
            "readyReplicas": st("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": max(0, desired - available),
            "conditions": [
                cond(
                    "Available",
                    available >= floor,
                    "MinimumReplicasAvailable"
                    if available >= floor
                    else "MinimumReplicasUnavailable",
                    "Deployment has minimum availability."
                    if available >= floor
                    else "Deployment does not have minimum availability.",
                ),
                cond(
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                    f'ReplicaSet "{new_name}" has successfully progressed.'
                    if complete
                    else f'ReplicaSet "{new_name}" is progressing.',
                ),
            ],
        }
        if d.get("status") != status:
            self.api.update(
                self.deploy,
                d["metadata"]["namespace"],
                d["metadata"]["name"],
                {**d, "status": status},
                self.manager,
                subresource="status",
            )
