"""The reconcile's last step: write the status the children show, when it changed.

Only the writer whose patch lands on the version it read reports the change, so a stale
view (a cache that has not caught up) never repeats Events: a refused patch re-reads the
object and writes what it observed on top of the newer status.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from infleet.autoscaler.health import ConditionState
from infleet.operator.kube import Kube
from infleet.operator.names import Pool
from infleet.operator.replicas import PoolReplicas
from infleet.operator.status import PodTroubles, Problem, compute_status, decision_events

Obj = dict[str, Any]
STATUS_CONFLICT_RETRIES = 3


@dataclass(slots=True)
class Outcome:
    status: Obj
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, msg)
    result: str = "applied"  # applied | invalid | error
    body: Obj | None = None  # the InferenceService as last read or written; None: gone
    replaced: str | None = None  # the resourceVersion our status write replaced; None: none
    error: Exception | None = None  # a failure to retry after the status reports it
    applied: list[Obj] = field(default_factory=list)  # children as the applies returned them


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_changed(old: Obj, new: Obj) -> bool:
    return any(old.get(key) != value for key, value in new.items())


def report(
    body: Obj,
    kube: Kube,
    replicas: PoolReplicas | None,
    deployments: dict[Pool, Obj | None],
    service: Obj | None,
    problem: Problem | None = None,
    extra: Obj | None = None,
    now: str | None = None,
    troubles: PodTroubles | None = None,
    metrics: ConditionState | None = None,
) -> Outcome:
    """Writes the status (plus `extra` fields, e.g. the autoscaler's decision; `troubles`:
    the pods' fetch failures and engine refusals; `metrics`: the autoscaler's
    MetricsUnavailable, None when it did not decide this time) when it changed; returns it
    with the Events to post."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    now = now or now_rfc3339()
    events: list[tuple[str, str, str]] = []
    replaced = None
    for _attempt in range(STATUS_CONFLICT_RETRIES):
        old = body.get("status") or {}
        status = compute_status(
            body, deployments, service, replicas, now, problem, troubles, metrics
        )
        status |= extra or {}
        if not status_changed(old, status):
            break
        version = body["metadata"]["resourceVersion"]
        written = kube.patch_status(namespace, name, status, version)
        if written is not None:
            events, body, replaced = decision_events(old, status), written, version
            break
        fresh = kube.get_inference_service(namespace, name)
        if fresh is None or fresh["metadata"].get("generation") != meta.get("generation"):
            body = fresh
            break  # gone, or a newer spec whose own reconcile will write the status
        body = fresh
    result = "invalid" if problem else "applied"
    return Outcome(status, events, result, body, replaced)
