"""One reconcile of an InferenceService: render -> apply -> prune -> autoscale -> status.

`plan` decides everything from the object alone; `reconcile` is the thin I/O around it,
starting from a Snapshot of the operator's caches (operator/cache.py): it applies only
the children that are missing or lack what is rendered, deletes the children the spec no
longer renders (operator/diff.py), runs the autoscaler when a decision is due, and
writes the status the children show. A spec that cannot be honoured touches no child.

The operator before this one rode on kopf's timers, which need a finalizer; the first
reconcile of each service removes it (and kopf's bookkeeping annotation), so deleting a
service or its namespace never waits for an operator again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from infleet.api import GROUP, InferenceService
from infleet.operator.admin_key import needs_admin_key
from infleet.operator.admin_secret import admin_key
from infleet.operator.autoscale import Autoscaler
from infleet.operator.cache import Snapshot, trimmed
from infleet.operator.diff import to_apply, to_prune
from infleet.operator.engines import ENGINES
from infleet.operator.errors import SpecError, describe
from infleet.operator.kube import Kube
from infleet.operator.lora_service import prepare as prepare_lora
from infleet.operator.names import POOLS, pool_deployment_names, router_name
from infleet.operator.pod_trouble import engine_refusals, fetch_failures
from infleet.operator.render import RenderOptions, render_children
from infleet.operator.replicas import PoolReplicas, plan_replicas
from infleet.operator.report import Outcome, report
from infleet.operator.status import PodTroubles, Problem

Obj = dict[str, Any]
LEGACY_FINALIZER = f"{GROUP}/operator"
LEGACY_ANNOTATION = f"{GROUP}/last-handled-configuration"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    isvc: InferenceService | None  # None: the spec does not validate
    children: list[Obj]  # empty when there is a problem: no child is touched
    replicas: PoolReplicas | None
    problem: Problem | None


def plan(body: Obj, options: RenderOptions, adapters: list[str] | None = None) -> Plan:
    """The children to apply, or why none may be touched."""
    try:
        isvc = InferenceService.model_validate(body)
        children = render_children(isvc, options, adapters or [])
        return Plan(isvc, children, plan_replicas(isvc), None)
    except ValidationError as err:
        return Plan(None, [], None, Problem("InvalidSpec", describe(err)))
    except SpecError as err:
        return Plan(None, [], None, Problem(err.reason, err.located()))


def url_service(children: list[Obj], live: dict[tuple[str, str], Obj], name: str) -> str:
    """The Service status.url names: the router's where the service has one (rendered now,
    or, with a spec that cannot be rendered, still live), else the engines'."""
    routed = router_name(name)
    if children:
        has_router = any(
            c["kind"] == "Service" and c["metadata"]["name"] == routed for c in children
        )
    else:
        has_router = ("Service", routed) in live
    return routed if has_router else name


def legacy_ops(meta: Obj) -> list[Obj]:
    """A JSON patch removing the old operator's finalizer and annotation ([]: none)."""
    ops: list[Obj] = []
    finalizers = meta.get("finalizers") or []
    if LEGACY_FINALIZER in finalizers:
        kept = [f for f in finalizers if f != LEGACY_FINALIZER]
        ops += [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "replace", "path": "/metadata/finalizers", "value": kept},
        ]
    if LEGACY_ANNOTATION in (meta.get("annotations") or {}):
        path = "/metadata/annotations/" + LEGACY_ANNOTATION.replace("/", "~1")
        ops.append({"op": "remove", "path": path})
    return ops


def transient(err: ApiException) -> bool:
    """A failure worth retrying as is, not reporting: a conflict, throttling, a 5xx."""
    return err.status in (409, 429) or (err.status or 0) >= 500


def reconcile(
    snap: Snapshot,
    kube: Kube,
    options: RenderOptions,
    autoscaler: Autoscaler | None = None,
    now: str | None = None,
) -> Outcome:
    parent = snap.parent
    meta = parent["metadata"]
    key = (meta.get("namespace") or "default", meta["name"])
    ops = legacy_ops(meta)
    if ops:
        parent = kube.patch_metadata(*key, ops) or kube.get_inference_service(*key)
    if parent is None or parent["metadata"].get("deletionTimestamp"):
        return Outcome({}, result="deleted", body=parent)  # owner references do the rest
    p = plan(parent, options, snap.adapters)
    problem, error, applied = p.problem, None, []
    live = {(c["kind"], c["metadata"]["name"]): c for c in snap.children}
    if p.problem is None:
        try:
            # The keys before the pods that reference them.
            what = "the admin key"
            if p.isvc is not None and needs_admin_key(
                p.isvc.spec, ENGINES[p.isvc.spec.engine.kind]
            ):
                admin_key(kube, parent, create=True)
            what = "the LoRA keys"
            if p.isvc is not None and p.isvc.spec.engine.lora.max_adapters:
                prepare_lora(kube, parent, p.isvc)
            for child in to_apply(p.children, snap.children):
                what = f"{child['kind']}/{child['metadata']['name']}"
                applied.append(trimmed(kube.apply(child), child["kind"], child["apiVersion"]))
                live[(child["kind"], child["metadata"]["name"])] = applied[-1]
            for stale in to_prune(p.children, snap.children, meta["uid"]):
                kind, name, uid = stale["kind"], stale["metadata"]["name"], stale["metadata"]["uid"]
                what = f"deleting {kind}/{name}"
                kube.delete_child(kind, key[0], name, uid)
                live.pop((stale["kind"], stale["metadata"]["name"]))
        except ApiException as err:
            if transient(err):
                raise  # the controller retries with backoff; nothing to report
            error = err
            problem = Problem("ApplyFailed", f"{what}: {err.status} {err.reason}")
    names = pool_deployment_names(meta["name"])
    # A pool's workload: its Deployment, or its LeaderWorkerSet (replicas across nodes;
    # one group counts as one replica in the status and for the autoscaler).
    deployments = {
        pool: live.get(("Deployment", names[pool])) or live.get(("LeaderWorkerSet", names[pool]))
        for pool in POOLS
    }
    url_name = url_service(p.children, live, meta["name"])
    service = live.get(("Service", url_name))
    scaled = None
    if problem is None and autoscaler is not None and p.isvc is not None:
        routers = snap.router_pods if url_name != meta["name"] else None  # it has a router
        scaled = autoscaler.run(key, p.isvc, snap.pods, deployments, snap.children, routers)
    if autoscaler is not None and scaled is not None and scaled.state is not None:
        try:
            applied.append(trimmed(kube.apply(scaled.state), "ConfigMap", "v1"))
            autoscaler.saved(key, scaled.observation.now)
        except ApiException as err:  # the memory stays here; the next decision retries
            log.warning("%s/%s: autoscaler state not saved: %s %s", *key, err.status, err.reason)
    extra = {"lastScalingDecision": scaled.status} if scaled and scaled.status else None
    seen = None if scaled is None else scaled.condition
    troubles = PodTroubles(fetch_failures(snap.pods), engine_refusals(snap.pods))
    outcome = report(
        parent, kube, p.replicas, deployments, service, problem, extra, now, troubles, seen
    )
    if scaled and scaled.status and outcome.replaced:
        outcome.events.append(("Normal", scaled.decision.reason, scaled.status["message"]))
    outcome.result, outcome.error = ("error" if error else outcome.result), error
    outcome.applied = applied
    return outcome
