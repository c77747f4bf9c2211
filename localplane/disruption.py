"""PodDisruptionBudget status and the Eviction API, so `kubectl drain` works: an
eviction that would leave fewer healthy pods than a budget allows answers 429."""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from infleet.localplane.controller import Controller
from infleet.localplane.errors import ApiError
from infleet.localplane.replicasets import is_active, is_ready
from infleet.localplane.selectors import SelectorIndex, selects
from infleet.localplane.server import read_body
from infleet.localplane.store import WatchEvent, now_rfc3339

Obj = dict[str, Any]


def _scaled(value: int | str, total: int) -> int:
    if isinstance(value, int):
        return value
    return math.ceil(float(str(value).rstrip("%")) * total / 100)


def budget_status(pdb: Obj, pods: list[Obj]) -> Obj:
    """The PDB's status over the pods it selects (those not being deleted)."""
    spec = pdb.get("spec") or {}
    selected = [
        p
        for p in pods
        if is_active(p) and selects(spec.get("selector"), p["metadata"].get("labels"))
    ]
    expected, healthy = len(selected), sum(1 for p in selected if is_ready(p))
    if "minAvailable" in spec:
        desired = _scaled(spec["minAvailable"], expected)
    else:
        desired = expected - _scaled(spec.get("maxUnavailable", 0), expected)
    allowed = max(0, healthy - max(0, desired))
    return {
        "observedGeneration": pdb["metadata"].get("generation", 1),
        "currentHealthy": healthy,
        "desiredHealthy": max(0, desired),
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "True" if allowed else "False",
                "reason": "SufficientPods" if allowed else "InsufficientPods",
                "message": "",
                "observedGeneration": pdb["metadata"].get("generation", 1),
                "lastTransitionTime": now_rfc3339(),
            }
        ],
    }


def mark_disruption_target(
    api: Any, rt: Any, pod: Obj, reason: str, message: str, manager: str
) -> None:
    """Write the DisruptionTarget=True condition a pod gets just before it is deleted for
    a disruption (eviction, node shutdown): what the autoscaler counts as interruptions."""
    status = pod.setdefault("status", {})
    conds = [c for c in status.get("conditions") or [] if c["type"] != "DisruptionTarget"]
    conds.append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_rfc3339(),
        }
    )
    status["conditions"] = conds
    meta = pod["metadata"]
    api.update(rt, meta["namespace"], meta["name"], pod, manager, subresource="status")


class DisruptionController(Controller):
    manager = "disruption-controller"

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.pdbs = api.registry.get("policy", "v1", "poddisruptionbudgets")
        self.pods = api.registry.get("", "v1", "pods")
        self.selectors = SelectorIndex()  # the budgets' selectors, from their events
        for pdb in api.store.unordered(self.pdbs.key):
            self._file(pdb, "ADDED")

    def _file(self, pdb: Obj, event_type: str) -> None:
        meta = pdb["metadata"]
        if event_type == "DELETED":
            self.selectors.drop(meta["namespace"], meta["name"])
        else:
            selector = (pdb.get("spec") or {}).get("selector")
            self.selectors.put(meta["namespace"], meta["name"], selector)

    def _budgets_of(self, ns: str, *labels: dict[str, str] | None) -> set[str]:
        """Names of the budgets in `ns` that select any of these label sets."""
        return set().union(*(self.selectors.matching(ns, lb) for lb in labels))

    def _candidates(self, pdb: Obj) -> list[Obj]:
        """A superset of the pods `pdb` selects: those carrying all its matchLabels."""
        match = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        return self.api.store.labeled(self.pods.key, pdb["metadata"]["namespace"], match)

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == self.pdbs.key:
            self._file(event.obj, event.type)
            self.enqueue((meta["namespace"], meta["name"]))
        elif event.key == self.pods.key:
            old = (event.old or {}).get("metadata", {}).get("labels")
            for name in self._budgets_of(meta["namespace"], meta.get("labels"), old):
                self.enqueue((meta["namespace"], name))

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        pdb = self.api.store.peek(self.pdbs.key, ns, name)
        if pdb is None:
            return
        status = budget_status(pdb, self._candidates(pdb))
        old = pdb.get("status") or {}
        if {k: v for k, v in old.items() if k != "conditions"} != {
            k: v for k, v in status.items() if k != "conditions"
        }:
            # update() copies the body and a status write keeps only its status.
            new = {**pdb, "status": status}
            self.api.update(self.pdbs, ns, name, new, self.manager, subresource="status")

    async def evict(self, request: web.Request, rt: Any, ns: str, name: str) -> web.Response:
        body = await read_body(request)
        pod = self.api.get(rt, ns, name)
        for pdb_name in sorted(self._budgets_of(ns, pod["metadata"].get("labels"))):
            pdb = self.api.store.peek(self.pdbs.key, ns, pdb_name)
            status = budget_status(pdb, self._candidates(pdb))
            if is_ready(pod) and status["disruptionsAllowed"] < 1:
                raise ApiError(
                    429,
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    reason="TooManyRequests",
                    details={
                        "causes": [
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {pdb['metadata']['name']} needs "
                                f"{status['desiredHealthy']} healthy pods and has "
                                f"{status['currentHealthy']} currently",
                            }
                        ]
                    },
                )
        mark_disruption_target(
            self.api, rt, pod, "EvictionByEvictionAPI", "Eviction API: evicting", self.manager
        )
        opts = (body or {}).get("deleteOptions") or {}
        self.api.delete(
            rt,
            ns,
            name,
            grace=opts.get("gracePeriodSeconds"),
            preconditions=opts.get("preconditions"),
        )
        return web.Response(
            status=201,
            content_type="application/json",
            text=json.dumps(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "code": 201,
                }
            ),
        )
