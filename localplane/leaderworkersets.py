"""The LeaderWorkerSet controller: per replica a group of `size` pods, the leader
(`NAME-i`, worker index 0) and its workers (`NAME-i-j`), started and deleted together.

As LWS does: every pod gets LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX and
LWS_NAME and the `leaderworkerset.sigs.k8s.io/*` labels; workers are owned by their
leader, so deleting a leader deletes its group; under RecreateGroupOnPodRestart (the
default) a group whose pod fails, restarts a container or disappears is deleted whole
and made again; status counts groups (`replicas`: leaders, `readyReplicas`: groups whose
pods are all Ready); `spec.replicas` scales by group index, the highest going first.

Where it differs (docs/localplane.md): LWS_LEADER_ADDRESS is the leader's pod IP, not its
DNS name (no cluster DNS here), so workers are created once the leader has an IP (under
either startupPolicy; LeaderReady also waits for Ready). A changed template recreates
stale groups one at a time while every other group is ready (no maxSurge groups).
"""

from __future__ import annotations

from typing import Any

from infleet.localplane.clone import clone
from infleet.localplane.controller import Controller
from infleet.localplane.deployments import template_hash
from infleet.localplane.events import record
from infleet.localplane.lws_crd import GROUP, PLURAL, VERSION
from infleet.localplane.replicasets import controller_of, is_active, is_ready
from infleet.localplane.store import WatchEvent, now_rfc3339

Obj = dict[str, Any]
PREFIX = "leaderworkerset.sigs.k8s.io/"
NAME_LABEL, GROUP_LABEL, WORKER_LABEL = (
    PREFIX + "name",
    PREFIX + "group-index",
    PREFIX + "worker-index",
)
GROUP_KEY_LABEL, REVISION_LABEL = PREFIX + "group-key", PREFIX + "template-revision-hash"
SIZE_ANNOTATION, LEADER_ANNOTATION = PREFIX + "size", PREFIX + "leader-name"
# Set on a leader once its workers exist: a worker missing after that was lost, not late.
WORKERS_CREATED = "localplane.infleet.io/lws-workers-created"


def _broken(pod: Obj) -> bool:
    """A pod whose failure restarts its group: failed, or a container restarted."""
    status = pod.get("status") or {}
    statuses = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    return status.get("phase") == "Failed" or any(s.get("restartCount", 0) for s in statuses)


class LeaderWorkerSetController(Controller):
    manager = "lws-controller-manager"

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.pods = api.registry.get("", "v1", "pods")

    @property
    def lws(self) -> Any:
        return self.api.registry.get(GROUP, VERSION, PLURAL)  # None until the CRD is served

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == (GROUP, PLURAL):
            self.enqueue((meta["namespace"], meta["name"]))
        elif event.key == self.pods.key and NAME_LABEL in (meta.get("labels") or {}):
            self.enqueue((meta["namespace"], meta["labels"][NAME_LABEL]))

    def resync_items(self) -> list[Any]:
        return [
            (o["metadata"]["namespace"], o["metadata"]["name"])
            for o in self.api.store.items((GROUP, PLURAL))
        ]

    def _owned(self, uid: str) -> list[Obj]:
        return [
            p
            for p in self.api.store.owned_by(uid, self.pods.key)
            if (controller_of(p) or {}).get("uid") == uid
        ]

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        lws = self.api.store.peek((GROUP, PLURAL), ns, name)
        if lws is None or lws["metadata"].get("deletionTimestamp"):
            return
        lwt = lws["spec"]["leaderWorkerTemplate"]
        revision = template_hash(lwt)
        replicas = lws["spec"].get("replicas", 1)
        leaders = {
            int(p["metadata"]["labels"][GROUP_LABEL]): p
            for p in self._owned(lws["metadata"]["uid"])
        }
        groups = {i: (p, self._owned(p["metadata"]["uid"])) for i, p in leaders.items()}
        ready = {i for i, (p, ws) in groups.items() if self._group_ready(lwt, p, ws)}
        for i in range(replicas):
            if i not in groups:
                self._create_leader(lws, i, revision)
                continue
            leader, workers = groups[i]
            if leader["metadata"].get("deletionTimestamp"):
                continue  # the old group is going; the next event makes the new one
            stale = leader["metadata"]["labels"].get(REVISION_LABEL) != revision
            if self._needs_recreate(lwt, leader, workers):
                self._delete_group(lws, leader, workers, "a pod of the group failed or restarted")
            elif stale and ready - {i} >= set(range(replicas)) - {i}:
                self._delete_group(lws, leader, workers, "its template changed")
                ready.discard(i)
            elif not leader["metadata"].get("annotations", {}).get(WORKERS_CREATED):
                self._maybe_create_workers(lws, leader, i)
        for i, (leader, workers) in groups.items():
            if i >= replicas and not leader["metadata"].get("deletionTimestamp"):
                self._delete_group(lws, leader, workers, "scaled down")
        self._update_status(lws, revision)

    def _group_ready(self, lwt: Obj, leader: Obj, workers: list[Obj]) -> bool:
        live = [w for w in workers if is_active(w)]
        return (
            is_active(leader)
            and is_ready(leader)
            and len(live) == lwt.get("size", 1) - 1
            and all(is_ready(w) for w in live)
        )

    def _needs_recreate(self, lwt: Obj, leader: Obj, workers: list[Obj]) -> bool:
        if lwt.get("restartPolicy", "RecreateGroupOnPodRestart") != "RecreateGroupOnPodRestart":
            return False
        created = leader["metadata"].get("annotations", {}).get(WORKERS_CREATED)
        lost = created and sum(1 for w in workers if is_active(w)) < lwt.get("size", 1) - 1
        return bool(lost) or any(_broken(p) for p in (leader, *workers))

    def _pod(self, lws: Obj, template: Obj, name: str, i: int, j: int, leader_address: Any) -> Obj:
        template = clone(template or {})
        meta, spec = template.get("metadata") or {}, template.get("spec") or {}
        size = lws["spec"]["leaderWorkerTemplate"].get("size", 1)
        lws_name = lws["metadata"]["name"]
        labels = {
            **(meta.get("labels") or {}),
            NAME_LABEL: lws_name,
            GROUP_LABEL: str(i),
            WORKER_LABEL: str(j),
            GROUP_KEY_LABEL: template_hash(
                {"ns": lws["metadata"]["namespace"], "lws": lws_name, "group": i}
            ),
        }
        env = [
            {"name": "LWS_LEADER_ADDRESS", **leader_address},
            {"name": "LWS_GROUP_SIZE", "value": str(size)},
            {"name": "LWS_WORKER_INDEX", "value": str(j)},
            {"name": "LWS_NAME", "value": lws_name},
        ]
        for c in spec.get("containers") or []:
            c["env"] = [*env, *(c.get("env") or [])]
        spec.setdefault("hostname", name)
        spec.setdefault("subdomain", lws_name)
        return {
            "metadata": {
                "name": name,
                "namespace": lws["metadata"]["namespace"],
                "labels": labels,
                "annotations": {**(meta.get("annotations") or {}), SIZE_ANNOTATION: str(size)},
            },
            "spec": spec,
        }

    def _create_leader(self, lws: Obj, i: int, revision: str) -> None:
        lwt = lws["spec"]["leaderWorkerTemplate"]
        name = f"{lws['metadata']['name']}-{i}"
        # The leader's address is its own IP (the kubelet fills the fieldRef in).
        address = {"valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        pod = self._pod(
            lws, lwt.get("leaderTemplate") or lwt["workerTemplate"], name, i, 0, address
        )
        pod["metadata"]["labels"][REVISION_LABEL] = revision
        pod["metadata"]["ownerReferences"] = [
            self._ref(lws, "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
        ]
        self.api.create(self.pods, lws["metadata"]["namespace"], pod, self.manager)
        record(self.api, lws, "Normal", "CreatedLeader", f"Created leader pod {name}", self.manager)

    def _maybe_create_workers(self, lws: Obj, leader: Obj, i: int) -> None:
        ip = (leader.get("status") or {}).get("podIP")
        if not ip or (lws["spec"].get("startupPolicy") == "LeaderReady" and not is_ready(leader)):
            return
        lwt = lws["spec"]["leaderWorkerTemplate"]
        ns, leader_name = lws["metadata"]["namespace"], leader["metadata"]["name"]
        for j in range(1, lwt.get("size", 1)):
            pod = self._pod(lws, lwt["workerTemplate"], f"{leader_name}-{j}", i, j, {"value": ip})
            pod["metadata"]["labels"][REVISION_LABEL] = leader["metadata"]["labels"][REVISION_LABEL]
            pod["metadata"]["annotations"][LEADER_ANNOTATION] = leader_name
            pod["metadata"]["ownerReferences"] = [self._ref(leader, "v1", "Pod")]
            self.api.create(self.pods, ns, pod, self.manager)
        marked = clone(leader)
        marked["metadata"].setdefault("annotations", {})[WORKERS_CREATED] = "true"
        self.api.update(self.pods, ns, leader_name, marked, self.manager)

    def _delete_group(self, lws: Obj, leader: Obj, workers: list[Obj], why: str) -> None:
        ns = lws["metadata"]["namespace"]
        for pod in (*workers, leader):
            if not pod["metadata"].get("deletionTimestamp"):
                self.api.delete(self.pods, ns, pod["metadata"]["name"])
        message = f"Deleted group {leader['metadata']['labels'][GROUP_LABEL]}: {why}"
        record(self.api, lws, "Normal", "RecreateGroup", message, self.manager)

    @staticmethod
    def _ref(owner: Obj, api_version: str, kind: str) -> Obj:
        return {
            "apiVersion": api_version,
            "kind": kind,
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def _update_status(self, lws: Obj, revision: str) -> None:
        lwt = lws["spec"]["leaderWorkerTemplate"]
        leaders = [p for p in self._owned(lws["metadata"]["uid"]) if is_active(p)]
        ready = [p for p in leaders if self._group_ready(lwt, p, self._owned(p["metadata"]["uid"]))]
        want = lws["spec"].get("replicas", 1)
        available = len(ready) >= want
        old = {c["type"]: c for c in (lws.get("status") or {}).get("conditions") or []}
        conditions = []
        for ctype, status, reason, message in (
            ("Available", available, "AllGroupsReady", "All replicas are ready"),
            ("Progressing", not available, "GroupsProgressing", "Replicas are progressing"),
        ):
            value = "True" if status else "False"
            stamp = old.get(ctype, {}).get("lastTransitionTime")
            if old.get(ctype, {}).get("status") != value or stamp is None:
                stamp = now_rfc3339()
            conditions.append(
                {
                    "type": ctype,
                    "status": value,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": stamp,
                }
            )
        status = {
            "replicas": len(leaders),
            "readyReplicas": len(ready),
            "updatedReplicas": sum(
                1 for p in ready if p["metadata"]["labels"].get(REVISION_LABEL) == revision
            ),
            "hpaPodSelector": f"{NAME_LABEL}={lws['metadata']['name']},{WORKER_LABEL}=0",
            "conditions": conditions,
        }
        if lws.get("status") != status:
            self.api.update(
                self.lws,
                lws["metadata"]["namespace"],
                lws["metadata"]["name"],
                {**lws, "status": status},
                self.manager,
                subresource="status",
            )
