"""The child watch: status follows readiness, and a hand-edited child is put back.

An event on a labelled child queues it for its parent (operator/parents.py). Each batch
starts from the parent as the operator last read or wrote it and, when every child in
it still holds what the operator renders, only recomputes the status from kopf's
indices of the Deployments and Service: no API call unless the status changed (one
patch; a stale parent costs a refused patch and a read). A deleted or drifted child
runs the full reconcile on a fresh read, which applies the children again. Either way
this settles instead of looping: applying unchanged children changes nothing on the
server, so it makes no new events.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from infleet.operator.drift import drifted
from infleet.operator.indexes import CHILD_SELECTOR, Key, Obj, snapshot
from infleet.operator.kube import Kube
from infleet.operator.names import POOL_LABEL, POOLS, SERVICE_LABEL
from infleet.operator.on_service import finish
from infleet.operator.parents import Batch
from infleet.operator.reconcile import plan, reconcile, report
from infleet.operator.runtime import Runtime
from infleet.operator.settings import CHILD_KINDS


def refresh(
    key: Key,
    batch: Batch,
    deployments: kopf.Index,
    services: kopf.Index,
    runtime: Runtime,
    logger: logging.Logger | Any,
) -> None:
    """Runs holding the parent's key (ParentQueue.drain)."""
    started, kube = time.perf_counter(), runtime.kube
    parent = runtime.parents.known(key) or kube.get_inference_service(*key)
    if parent is None or parent["metadata"].get("deletionTimestamp"):
        return  # the garbage collector removes the children
    if (parent.get("status") or {}).get("observedGeneration") != parent["metadata"]["generation"]:
        return  # its own handler has yet to act on this spec; it writes the status
    p = plan(parent, runtime.options())
    if p.problem is None and any(
        (live is None or drifted(p.children, live))
        and confirmed(kube, p.children, kind, key[0], name)
        for (kind, name), live in batch.items()
    ):
        fresh = kube.get_inference_service(*key)  # apply only from the latest spec
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        outcome = reconcile(fresh, kube, runtime.options())
        runtime.parents.remember(key, outcome.body)
        return finish(fresh, outcome, started, logger)
    pools = {d["metadata"]["labels"][POOL_LABEL]: d for d in snapshot(deployments, key)}
    service = next(iter(snapshot(services, key)), None)
    if p.problem is None and (len(pools) < len(POOLS) or service is None):
        return  # a child kopf has not indexed yet: its own event refreshes the status
    outcome = report(parent, kube, p, pools, service)
    runtime.parents.remember(key, outcome.body)
    finish(parent, outcome, started, logger)


def confirmed(kube: Kube, desired: list[Obj], kind: str, namespace: str, name: str) -> bool:
    """Whether a child whose event showed drift still shows it: an event queued while a
    reconcile held the parent predates that reconcile's apply."""
    live = kube.get_child(kind, namespace, name)
    return live is None or drifted(desired, live)


def on_child_event(
    type: str,
    body: kopf.Body,
    name: str,
    namespace: str,
    labels: kopf.Labels,
    memo: kopf.Memo,
    logger: logging.Logger,
    service_deployments: kopf.Index,
    service_fronts: kopf.Index,
    **_: Any,
) -> None:
    key, runtime = (namespace, labels[SERVICE_LABEL]), memo.runtime
    runtime.parents.add(key, (body["kind"], name), None if type == "DELETED" else dict(body))
    runtime.parents.drain(
        key,
        lambda batch: refresh(key, batch, service_deployments, service_fronts, runtime, logger),
    )


for _group, _version, _plural in CHILD_KINDS:
    kopf.on.event(_group, _version, _plural, labels=CHILD_SELECTOR)(on_child_event)
