"""Children's state -> InferenceService status: pure functions, no I/O.

Conditions follow metav1.Condition: lastTransitionTime moves only when a condition's
status flips, so GitOps tools and `kubectl wait` see stable objects between changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infleet.autoscaler.health import CONDITION as METRICS_CONDITION
from infleet.autoscaler.health import ConditionState
from infleet.operator.names import POOLS, Pool, pod_selector
from infleet.operator.render import SERVICE_PORT
from infleet.operator.replicas import PoolReplicas

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the operator could not do its job this time (becomes Degraded)."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class PodTroubles:
    """What the service's pods say about why they cannot start (pod_trouble.py)."""

    fetches: list[str]  # model fetch failures
    refusals: list[str]  # the engine refused the model (unsupported architecture, ...)


@dataclass(frozen=True, slots=True)
class PoolState:
    desired: int
    current: int
    ready: int
    rolled_out: bool
    failure: str | None  # the Deployment's own failure message


def pool_state(deployment: Obj | None, desired: int | None) -> PoolState:
    if deployment is None:
        return PoolState(desired or 0, 0, 0, rolled_out=(desired or 0) == 0, failure=None)
    spec, status = deployment.get("spec", {}), deployment.get("status") or {}
    want = spec.get("replicas", 1) if desired is None else desired
    generation = deployment.get("metadata", {}).get("generation", 0)
    current, updated = status.get("replicas", 0), status.get("updatedReplicas", 0)
    # A LeaderWorkerSet (a pool of multi-node groups, operator/lws.py) counts groups in the
    # same fields but reports no observedGeneration.
    observed = generation if deployment.get("kind") == "LeaderWorkerSet" else 0
    rolled_out = (
        status.get("observedGeneration", observed) >= generation
        and spec.get("replicas", 1) == want
        and updated >= want
        and current == updated
    )
    failure = None
    for cond in status.get("conditions", []):
        stuck = (
            cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded"
        )
        broken = cond.get("type") == "ReplicaFailure" and cond.get("status") == "True"
        if (stuck and cond.get("status") == "False") or broken:
            failure = cond.get("message") or cond.get("reason")
    return PoolState(want, current, status.get("readyReplicas", 0), rolled_out, failure)


def service_url(name: str, namespace: str, service: Obj | None) -> str | None:
    """The Service's load-balancer (or loopback) address when it has one, else cluster DNS."""
    if service is None:
        return None
    name = service.get("metadata", {}).get("name") or name  # the router's, when it has one
    for ingress in (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []:
        host = ingress.get("ip") or ingress.get("hostname")
        if host:
            port = (ingress.get("ports") or [{}])[0].get("port", SERVICE_PORT)
            return f"http://{host}:{port}/v1"
    return f"http://{name}.{namespace}.svc.cluster.local:{SERVICE_PORT}/v1"


def set_condition(
    old: list[Obj],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> Obj:
    value = "True" if status else "False"
    previous = next((c for c in old if c.get("type") == type_), None)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == value else now
    cond = {"type": type_, "status": value, "reason": reason, "message": message}
    cond["lastTransitionTime"] = since
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def _summary(pools: dict[Pool, PoolState]) -> str:
    ready = sum(p.ready for p in pools.values())
    desired = sum(p.desired for p in pools.values())
    per_pool = ", ".join(f"{name} {p.ready}/{p.desired}" for name, p in pools.items())
    return f"{ready}/{desired} replicas ready ({per_pool})"


def _conditions(
    pools: dict[Pool, PoolState],
    plan: PoolReplicas | None,
    problem: Problem | None,
    troubles: PodTroubles,
) -> list[tuple]:
    failures = [f"{name}: {p.failure}" for name, p in pools.items() if p.failure]
    if problem is not None:
        degraded = (True, problem.reason, problem.message)
    elif troubles.refusals:  # more precise than the rollout's eventual deadline failure
        degraded = (True, "EngineRefusedModel", "; ".join(troubles.refusals))
    elif failures:
        degraded = (True, "RolloutFailed", "; ".join(failures))
    elif troubles.fetches:
        degraded = (True, "ModelFetchFailed", "; ".join(troubles.fetches))
    else:
        degraded = (False, "AsExpected", "")
    pending = [name for name, p in pools.items() if not p.rolled_out or p.ready < p.desired]
    if problem is not None:
        progressing = (False, problem.reason, "the spec is not being rolled out")
    elif pending:
        progressing = (True, "RollingOut", f"waiting for {', '.join(pending)}: {_summary(pools)}")
    else:
        progressing = (False, "RolloutComplete", _summary(pools))
    desired = sum(p.desired for p in pools.values())
    ready = sum(p.ready for p in pools.values())
    if problem is not None:
        # The spec cannot be rolled out: never Ready, whatever an older spec still serves.
        serving = f" (the last good spec still serves {_summary(pools)})" if ready else ""
        ready_cond = (False, problem.reason, problem.message + serving)
    elif plan is not None and desired == 0:
        ready_cond = (True, "ScaledToZero", f"scaled to zero on purpose: {plan.why}")
    elif all(p.ready >= p.desired for p in pools.values()):
        ready_cond = (True, "AllReplicasReady", _summary(pools))
    else:
        reason = "ReplicasNotReady" if ready else "NoReplicasReady"
        ready_cond = (False, reason, _summary(pools))
    return [("Ready", *ready_cond), ("Progressing", *progressing), ("Degraded", *degraded)]


def compute_status(
    body: Obj,
    deployments: dict[Pool, Obj | None],
    service: Obj | None,
    plan: PoolReplicas | None,
    now: str,
    problem: Problem | None = None,
    troubles: PodTroubles | None = None,
    metrics: ConditionState | None = None,
) -> Obj:
    """The status patch (wire form) from the raw object `body`, valid spec or not.

    Leaves lastScalingDecision to the autoscaler; its MetricsUnavailable condition is
    `metrics` when it decided this time, else the one the status holds (kept as is).
    """
    meta = body.get("metadata", {})
    name, namespace = meta["name"], meta.get("namespace") or "default"
    pools = {
        pool: pool_state(deployments.get(pool), None if plan is None else getattr(plan, pool))
        for pool in POOLS
    }
    generation = meta.get("generation")
    old = (body.get("status") or {}).get("conditions") or []
    conditions = [
        set_condition(old, type_, *rest, generation=generation, now=now)
        for type_, *rest in _conditions(pools, plan, problem, troubles or PodTroubles([], []))
    ]
    if metrics is not None:
        conditions.append(
            set_condition(
                old, metrics.type, metrics.status, metrics.reason, metrics.message, generation, now
            )
        )
    else:
        conditions += [c for c in old if c.get("type") == METRICS_CONDITION]
    status: Obj = {
        "observedGeneration": generation,
        "conditions": conditions,
        "replicas": sum(p.current for p in pools.values()),
        "readyReplicas": sum(p.ready for p in pools.values()),
        "selector": pod_selector(name),
        "pools": {name: {"desired": p.desired, "ready": p.ready} for name, p in pools.items()},
        "url": service_url(name, namespace, service),
    }
    return {k: v for k, v in status.items() if v is not None}


def decision_events(old: Obj, new: Obj) -> list[tuple[str, str, str]]:
    """(type, reason, message) Events for what changed between two statuses."""
    events = []
    old_pools, new_pools = old.get("pools") or {}, new.get("pools") or {}
    for pool in POOLS:
        before = (old_pools.get(pool) or {}).get("desired", 0)
        after = new_pools[pool]["desired"]
        if before != after:
            events.append(("Normal", "ScaledPool", f"{pool} pool: {before} -> {after} replicas"))
    old_conds = {c["type"]: c for c in old.get("conditions") or []}
    for cond in new["conditions"]:
        prev = old_conds.get(cond["type"], {})
        if (prev.get("status"), prev.get("reason")) == (cond["status"], cond["reason"]):
            continue
        if cond["type"] in ("Degraded", METRICS_CONDITION) and cond["status"] == "True":
            events.append(("Warning", cond["reason"], cond["message"]))
        elif cond["type"] == "Ready" and cond["status"] == "True":
            events.append(("Normal", cond["reason"], cond["message"]))
    return events
