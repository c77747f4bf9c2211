"""The scheduler: binds pending Pods to Nodes.

Filters as kube-scheduler does for what our operator renders: unschedulable nodes,
NoSchedule/NoExecute taints vs tolerations, nodeSelector, required node affinity,
resources (cpu, memory, pods, `nvidia.com/gpu`) against allocatable, and topology
spread with `whenUnsatisfiable: DoNotSchedule`. Scores least-allocated, then preferred
affinity, then spread. No preemption, no inter-pod affinity (docs/localplane.md).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from infleet.api.quantity import parse_quantity
from infleet.localplane.controller import Controller
from infleet.localplane.errors import ApiError
from infleet.localplane.events import record
from infleet.localplane.pod_requests import pod_requests
from infleet.localplane.selectors import selects
from infleet.localplane.server import read_body
from infleet.localplane.store import WatchEvent, now_rfc3339

Obj = dict[str, Any]


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression_holds(op: str, key: str, values: list[str], labels: dict[str, str]) -> bool:
    have = labels.get(key)
    if op == "In":
        return have in values
    if op == "NotIn":
        return have not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and have is not None and values:
        try:
            return int(have) > int(values[0]) if op == "Gt" else int(have) < int(values[0])
        except ValueError:
            return False
    return False


def _term_matches(term: Obj, node: Obj) -> bool:
    labels = node["metadata"].get("labels") or {}
    for e in term.get("matchExpressions") or []:
        if not _expression_holds(e["operator"], e["key"], e.get("values") or [], labels):
            return False
    for f in term.get("matchFields") or []:
        if f["key"] == "metadata.name":
            inside = node["metadata"]["name"] in (f.get("values") or [])
            if inside != (f["operator"] == "In"):
                return False
    return True


def unfit_reason(pod: Obj, node: Obj, used: dict[str, float]) -> str | None:
    """Why `pod` cannot go to `node` (the scheduler's wording), or None if it fits."""
    spec = pod["spec"]
    if node.get("spec", {}).get("unschedulable"):
        return "node(s) were unschedulable"
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(
            spec.get("tolerations") or [], taint
        ):
            return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return "node(s) didn't match Pod's node affinity/selector"
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(_term_matches(t, node) for t in terms):
        return "node(s) didn't match Pod's node affinity/selector"
    alloc = node.get("status", {}).get("allocatable") or {}
    for res, amount in pod_requests(pod).items():
        if amount > 0 and used.get(res, 0.0) + amount > parse_quantity(alloc.get(res, 0)):
            return "Too many pods" if res == "pods" else f"Insufficient {res}"
    return None


class Scheduler(Controller):
    manager = "default-scheduler"

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.pods = api.registry.get("", "v1", "pods")
        self.nodes = api.registry.get("", "v1", "nodes")

        # Kept from pod events so that no event or bind scans every pod of the cluster.
        self._unbound: set[tuple[str, str]] = set()  # pods waiting for this scheduler
        self._placed: dict[tuple[str, str], tuple[str, dict[str, float]]] = {}  # -> node, requests
        self._used: dict[str, dict[str, float]] = {}  # node -> summed requests of its pods
        for pod in api.store.unordered(self.pods.key):
            self._track(pod, pod)

    def on_event(self, event: WatchEvent) -> None:
        if event.key == self.pods.key:
            self._track(event.obj, None if event.type == "DELETED" else event.obj)
        if event.key == ("", "nodes") or (event.key == self.pods.key and event.type == "DELETED"):
            for key in sorted(self._unbound):  # capacity may have come free
                self.enqueue(key)
        elif event.key == self.pods.key and not event.obj["spec"].get("nodeName"):
            self.enqueue((event.obj["metadata"]["namespace"], event.obj["metadata"]["name"]))

    def resync_items(self) -> list[Any]:
        return sorted(self._unbound)

    def _track(self, pod: Obj, live: Obj | None) -> None:
        """Note where `pod` now stands (`live` None: it is gone)."""
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        if (
            live is not None
            and not live["spec"].get("nodeName")
            and not meta.get("deletionTimestamp")
            and live["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"
        ):
            self._unbound.add(key)
        else:
            self._unbound.discard(key)
        node = None
        if live is not None and live.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
            node = live["spec"].get("nodeName")
        before = self._placed.get(key)
        if before is not None and before[0] == node:
            return  # a pod's requests are immutable: nothing to re-add
        if before is not None:
            self._add(before[0], before[1], -1)
            del self._placed[key]
        if node:
            requests = pod_requests(live)
            self._placed[key] = (node, requests)
            self._add(node, requests, 1)

    def _add(self, node: str, requests: dict[str, float], sign: int) -> None:
        used = self._used.setdefault(node, {})
        for res, amount in requests.items():
            # rounded to nano units so that adding and taking away leave no float dust
            used[res] = round(used.get(res, 0.0) + sign * amount, 9)

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        pod = self.api.store.get(self.pods.key, ns, name)
        if pod is None or pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            return
        if pod["spec"].get("schedulerName", "default-scheduler") != "default-scheduler":
            return  # another scheduler's pod
        nodes = list(self.api.store.items(self.nodes.key))
        used = self._used
        reasons: Counter[str] = Counter()
        fits = []
        for node in nodes:
            why = unfit_reason(pod, node, used.get(node["metadata"]["name"], {}))
            if why is None:
                fits.append(node)
            else:
                reasons[why] += 1
        fits, spread_reasons = self._spread(pod, fits)
        reasons.update(spread_reasons)
        if not fits:
            self._unschedulable(pod, len(nodes), reasons)
            return
        best = min(fits, key=lambda n: self._score(pod, n, used.get(n["metadata"]["name"], {})))
        pod["spec"]["nodeName"] = best["metadata"]["name"]
        bound = self.api.update(self.pods, ns, name, pod, self.manager)
        self._set_condition(bound, "True", None, None)
        record(
            self.api,
            bound,
            "Normal",
            "Scheduled",
            f"Successfully assigned {ns}/{name} to {best['metadata']['name']}",
            self.manager,
        )

    def _spread(self, pod: Obj, nodes: list[Obj]) -> tuple[list[Obj], Counter[str]]:
        reasons: Counter[str] = Counter()
        for c in pod["spec"].get("topologySpreadConstraints") or []:
            if c.get("whenUnsatisfiable", "DoNotSchedule") != "DoNotSchedule":
                continue
            key, skew = c["topologyKey"], int(c.get("maxSkew", 1))
            counts = self._domain_counts(pod, c)
            domains = {n["metadata"].get("labels", {}).get(key) for n in nodes} - {None}
            low = min((counts.get(d, 0) for d in domains), default=0)
            kept = []
            for n in nodes:
                d = n["metadata"].get("labels", {}).get(key)
                if d is not None and counts.get(d, 0) + 1 - low <= skew:
                    kept.append(n)
                else:
                    reasons["node(s) didn't match pod topology spread constraints"] += 1
            nodes = kept
        return nodes, reasons

    def _domain_counts(self, pod: Obj, constraint: Obj) -> Counter[str]:
        node_labels = {
            n["metadata"]["name"]: n["metadata"].get("labels", {})
            for n in self.api.store.items(self.nodes.key)
        }
        counts: Counter[str] = Counter()
        selector = constraint.get("labelSelector")
        match = (selector or {}).get("matchLabels") or {}
        for p in self.api.store.labeled(self.pods.key, pod["metadata"]["namespace"], match):
            node = p["spec"].get("nodeName")
            if (
                node
                and not p["metadata"].get("deletionTimestamp")
                and selects(selector, p["metadata"].get("labels"))
            ):
                domain = node_labels.get(node, {}).get(constraint["topologyKey"])
                if domain is not None:
                    counts[domain] += 1
        return counts

    def _score(self, pod: Obj, node: Obj, used: dict[str, float]) -> tuple[float, int, str]:
        alloc = node.get("status", {}).get("allocatable") or {}
        share = max(
            (
                used.get(r, 0.0) / parse_quantity(alloc[r])
                for r in ("nvidia.com/gpu", "cpu")
                if parse_quantity(alloc.get(r, 0)) > 0
            ),
            default=0.0,
        )
        preferred = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
            "preferredDuringSchedulingIgnoredDuringExecution"
        ) or []
        weight = sum(p.get("weight", 1) for p in preferred if _term_matches(p["preference"], node))
        return (share, -weight, node["metadata"]["name"])

    async def bind(self, request: web.Request, rt: Any, ns: str, name: str) -> web.Response:
        """POST pods/NAME/binding: what a custom scheduler sends to place a pod."""
        body = await read_body(request)
        node = ((body or {}).get("target") or {}).get("name")
        pod = self.api.get(rt, ns, name)
        if not node or pod["spec"].get("nodeName"):
            raise ApiError(
                409,
                f'pods "{name}" is already assigned to node "{pod["spec"].get("nodeName")}"'
                if node
                else "binding needs target.name",
            )
        pod["spec"]["nodeName"] = node
        bound = self.api.update(rt, ns, name, pod, self._manager_of(request))
        self._set_condition(bound, "True", None, None)
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            status=201,
        )

    @staticmethod
    def _manager_of(request: web.Request) -> str:
        return request.headers.get("User-Agent", "scheduler").split("/")[0] or "scheduler"

    def _unschedulable(self, pod: Obj, total: int, reasons: Counter[str]) -> None:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        message = (
            f"0/{total} nodes are available: {detail}. preemption: not attempted "
            "(the local control plane does not preempt)"
        )
        if self._set_condition(pod, "False", "Unschedulable", message):
            record(self.api, pod, "Warning", "FailedScheduling", message, self.manager)

    def _set_condition(
        self, pod: Obj, status: str, reason: str | None, message: str | None
    ) -> bool:
        conds = pod.setdefault("status", {}).setdefault("conditions", [])
        old = next((c for c in conds if c["type"] == "PodScheduled"), None)
        if old and old["status"] == status and old.get("message") == message:
            return False
        cond: Obj = {"type": "PodScheduled", "status": status, "lastTransitionTime": now_rfc3339()}
        if reason:
            cond.update(reason=reason, message=message)
        pod["status"]["conditions"] = [c for c in conds if c["type"] != "PodScheduled"] + [cond]
        meta = pod["metadata"]
        self.api.update(
            self.pods, meta["namespace"], meta["name"], pod, self.manager, subresource="status"
        )
        return True
