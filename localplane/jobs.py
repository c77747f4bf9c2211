"""The Job controller: one pod at a time until one succeeds, within backoffLimit and
activeDeadlineSeconds, as batch/v1 reports it (status.active/succeeded/failed, the
Complete or Failed condition with the real controller's reasons and messages).

Emulated: `completions` and `parallelism` of 1 (the default; a Job asking for more is
run as if they were 1), the pod-failure count against backoffLimit, the deadline. Not
emulated: the exponential delay between retries (a failed pod is replaced at once),
podFailurePolicy, successPolicy, suspend, indexed completion, ttlSecondsAfterFinished
(finished Jobs stay until deleted; their owner's deletion still removes them).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from infleet.localplane.clone import clone
from infleet.localplane.controller import Controller
from infleet.localplane.events import record
from infleet.localplane.replicasets import controller_of, is_active
from infleet.localplane.store import WatchEvent, now_rfc3339

Obj = dict[str, Any]
DEFAULT_BACKOFF_LIMIT = 6  # batch/v1's default


def _finished(job: Obj) -> bool:
    return any(
        c["type"] in ("Complete", "Failed") and c["status"] == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _seconds_since(stamp: str) -> float:
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc).timestamp() - then.timestamp()


class JobController(Controller):
    manager = "job-controller"

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.jobs = api.registry.get("batch", "v1", "jobs")
        self.pods = api.registry.get("", "v1", "pods")

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        if event.key == self.jobs.key:
            self.enqueue((meta["namespace"], meta["name"]))
        elif event.key == self.pods.key:
            owner = controller_of(event.obj)
            if owner and owner.get("kind") == "Job":
                self.enqueue((meta["namespace"], owner["name"]))

    def resync_items(self) -> list[Any]:
        return [
            (j["metadata"]["namespace"], j["metadata"]["name"])
            for j in self.api.store.items(self.jobs.key)
            if not _finished(j)
        ]

    def _owned(self, job: Obj) -> list[Obj]:
        uid = job["metadata"]["uid"]
        return [
            p
            for p in self.api.store.owned_by(uid, self.pods.key)
            if (controller_of(p) or {}).get("uid") == uid
        ]

    async def reconcile(self, item: Any) -> None:
        ns, name = item
        job = self.api.store.peek(self.jobs.key, ns, name)
        if job is None or job["metadata"].get("deletionTimestamp") or _finished(job):
            return
        spec, status = job["spec"], clone(job.get("status") or {})
        status.setdefault("startTime", now_rfc3339())
        owned = self._owned(job)
        active = [p for p in owned if is_active(p)]
        phases = [(p.get("status") or {}).get("phase") for p in owned]
        succeeded, failed = phases.count("Succeeded"), phases.count("Failed")
        deadline = spec.get("activeDeadlineSeconds")
        ending: tuple[str, str, str] | None = None
        if succeeded:
            ending = ("Complete", "", "")
        elif failed > spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT):
            ending = (
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            )
        elif deadline is not None and _seconds_since(status["startTime"]) >= deadline:
            ending = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        if ending is not None:
            for pod in active:  # a finished Job leaves no pod running
                self.api.delete(self.pods, ns, pod["metadata"]["name"])
            active = []
            kind, reason, message = ending
            status["conditions"] = [
                {
                    "type": kind,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastProbeTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                }
            ]
            if kind == "Complete":
                status["completionTime"] = now_rfc3339()
            record(
                self.api,
                job,
                "Normal" if kind == "Complete" else "Warning",
                "Completed" if kind == "Complete" else reason,
                message or "Job completed",
                self.manager,
            )
        elif not active:
            active = [self._create_pod(job)]
        if deadline is not None and ending is None:
            left = deadline - _seconds_since(status["startTime"])
            asyncio.get_running_loop().call_later(max(left, 0.0) + 0.1, self.enqueue, item)
        status.update(active=len(active), succeeded=succeeded, failed=failed)
        status = {k: v for k, v in status.items() if v != 0 or k == "failed"}
        if job.get("status") != status:
            self.api.update(
                self.jobs, ns, name, {**job, "status": status}, self.manager, subresource="status"
            )

    def _create_pod(self, job: Obj) -> Obj:
        template = clone(job["spec"].get("template") or {})
        meta, uid, name = (
            template.get("metadata") or {},
            job["metadata"]["uid"],
            job["metadata"]["name"],
        )
        labels = {
            **(meta.get("labels") or {}),
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        pod = {
            "metadata": {
                "generateName": f"{name}-",
                "namespace": job["metadata"]["namespace"],
                "labels": labels,
                "annotations": meta.get("annotations") or {},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }
        created = self.api.create(self.pods, job["metadata"]["namespace"], pod, self.manager)
        record(
            self.api,
            job,
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {created['metadata']['name']}",
            self.manager,
        )
        return created
