"""Pods as the policy sees them, from the Pod objects of one InferenceService.

Pure functions over the API's JSON (no client): the operator keeps every pod labelled
`infleet.io/inferenceservice` in a watch-fed index, trimmed by `pod_view` to what these
functions read, and its timer hands one service's pods here (no list call per tick).

- pending: not bound to a node; starting: bound, not Ready; ready: the Ready condition.
- A spot pod with the `DisruptionTarget` condition (the kubelet sets it on a graceful
  node shutdown, the taint manager and the eviction API on a drain: how clouds reclaim
  spot nodes) is being interrupted: it is counted once, and reported under notice.
- Any other pod being deleted (a scale-down) has left its Deployment and is not shown.
- A replica across nodes is a LeaderWorkerSet group: its leader (worker index 0) stands
  for it, the workers are not shown (not a replica each, and they serve no /metrics).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from infleet.autoscaler.scrape import ScrapeTarget
from infleet.autoscaler.view import PENDING, READY, STARTING, PodState

POOL_LABEL = "infleet.io/pool"
WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"  # set by LeaderWorkerSet
DEFAULT_PORT = 8000

Pod = dict[str, Any]


def seconds(stamp: str | None, default: float) -> float:
    """An RFC 3339 timestamp as epoch seconds."""
    if not stamp:
        return default
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _conditions(pod: Pod) -> dict[str, dict]:
    return {c["type"]: c for c in pod.get("status", {}).get("conditions") or []}


def interrupted(pod: Pod) -> bool:
    pool = pod["metadata"].get("labels", {}).get(POOL_LABEL)
    return pool == "spot" and _conditions(pod).get("DisruptionTarget", {}).get("status") == "True"


def pod_state(pod: Pod, now: float) -> PodState | None:
    meta, status = pod["metadata"], pod.get("status", {})
    labels = meta.get("labels", {})
    pool = labels.get(POOL_LABEL)
    if pool not in ("dedicated", "spot") or labels.get(WORKER_INDEX_LABEL, "0") != "0":
        return None
    notice = interrupted(pod)
    gone = meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed")
    if gone and not notice:
        return None
    conds = _conditions(pod)
    created = seconds(meta.get("creationTimestamp"), now)
    if conds.get("Ready", {}).get("status") == "True":
        phase, since = READY, seconds(conds["Ready"].get("lastTransitionTime"), created)
    elif pod.get("spec", {}).get("nodeName"):
        scheduled = conds.get("PodScheduled", {}).get("lastTransitionTime")
        phase, since = STARTING, seconds(scheduled, created)
    else:
        phase, since = PENDING, created
    return PodState(meta["name"], pool, phase, since, notice=notice, created=created)


def pod_states(pods: Iterable[Pod], now: float) -> list[PodState]:
    return [s for s in (pod_state(p, now) for p in pods) if s is not None]


def new_interruptions(
    pods: Iterable[Pod], counted: set[str], now: float
) -> tuple[list[float], set[str]]:
    """Times of interruptions not counted before, and the uids counted from now on (only
    pods still listed: a uid never comes back)."""
    times, listed = [], set()
    for pod in pods:
        if not interrupted(pod):
            continue
        uid = pod["metadata"].get("uid") or pod["metadata"]["name"]
        listed.add(uid)
        if uid not in counted:
            when = _conditions(pod)["DisruptionTarget"].get("lastTransitionTime")
            times.append(seconds(when, now))
    return times, listed


def pod_view(pod: Pod) -> Pod:
    """The fields of a Pod the functions here read, nothing else: the operator keeps one
    per pod of every InferenceService in memory (a full Pod with managedFields is ~50x)."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    kept = ("name", "uid", "creationTimestamp", "deletionTimestamp")
    kept_meta = {k: meta[k] for k in kept if meta.get(k) is not None}
    labels = meta.get("labels") or {}
    kept_labels = {k: labels[k] for k in (POOL_LABEL, WORKER_INDEX_LABEL) if k in labels}
    ports = [
        {"name": p.get("name"), "containerPort": p.get("containerPort")}
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
        if p.get("name") == "http"
    ]
    return {
        "metadata": {**kept_meta, "labels": kept_labels},
        "spec": {"nodeName": spec.get("nodeName"), "containers": [{"ports": ports}]},
        "status": {
            "phase": status.get("phase"),
            "podIP": status.get("podIP"),
            "conditions": [
                {k: c.get(k) for k in ("type", "status", "lastTransitionTime")}
                for c in status.get("conditions") or []
            ],
        },
    }


def scrape_targets(pods: Iterable[Pod]) -> list[ScrapeTarget]:
    """Ready pods with an IP: their engine's /metrics on the container port named http."""
    targets = []
    for pod in pods:
        state = pod_state(pod, 0.0)
        ip = pod.get("status", {}).get("podIP")
        if state is None or state.phase != READY or not ip:
            continue
        port = DEFAULT_PORT
        for container in pod.get("spec", {}).get("containers") or []:
            for p in container.get("ports") or []:
                if p.get("name") == "http":
                    port = p["containerPort"]
        targets.append(ScrapeTarget(state.name, state.pool, f"http://{ip}:{port}/metrics"))
    return targets
