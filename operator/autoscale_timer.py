"""The autoscaler in the operator: a kopf timer per InferenceService.

Every PERIOD_S seconds: take the service's pods from the operator's watch-fed pod index,
read the ready ones' engine metrics (scraping each pod's /metrics by default, or one
Prometheus HTTP API with `infleet operator --prometheus-url`), run
`infleet.autoscaler.policy.decide` (the function the simulator runs), and when the
per-pool counts change record them in `status.lastScalingDecision` with an Event, then
run the operator's reconcile at once: it sizes the pool Deployments from that status
(`infleet.operator.replicas.plan_replicas`) with the server-side apply that owns their
`replicas`. One writer for a Deployment's replicas: a scale-subresource write of ours
would be taken back by its next apply.

The policy's memory (windows, learned capacity, interruption history) lives in kopf's
per-object memo: an operator restart starts it afresh, and the policy then holds the
fleet until it has seen a full window. `spec.replicas` (kubectl scale) pins the total;
the timer still splits it between the pools.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import kopf
from pydantic import ValidationError

from infleet.api import GROUP, PLURAL, VERSION, InferenceService
from infleet.autoscaler.adapter import policy_spec
from infleet.autoscaler.exporter import AutoscalerMetrics
from infleet.autoscaler.kube_view import new_interruptions, pod_states, scrape_targets
from infleet.autoscaler.policy import Decision, PolicyState, decide
from infleet.autoscaler.prometheus_api import PrometheusSource
from infleet.autoscaler.scrape import scrape
from infleet.autoscaler.view import Observation, ReplicaMetrics
from infleet.operator.indexes import snapshot
from infleet.operator.on_service import run_reconcile
from infleet.operator.replicas import plan_replicas

PERIOD_S = 10.0
METRICS = AutoscalerMetrics()
# Scrape failures go to the operator's log only: kopf's per-object logger would post each
# as a Kubernetes Event, one per unreachable replica every tick.
log = logging.getLogger(__name__)


@dataclass(slots=True)
class Memory:
    """What the timer keeps per InferenceService between ticks."""

    state: PolicyState = field(default_factory=PolicyState)
    counted: set[str] = field(default_factory=set)  # uids of interrupted pods counted


@dataclass(slots=True)
class Step:
    decision: Decision
    observation: Observation
    memory: Memory
    status: dict[str, Any] | None  # lastScalingDecision to write, None: unchanged


def read_metrics(
    source: PrometheusSource | None, kind: str, namespace: str, name: str, pods: list[dict]
) -> tuple[list[ReplicaMetrics], list[str]]:
    """The ready replicas' engine metrics, and one line per failure."""
    targets = scrape_targets(pods)
    if source is None:
        return scrape(targets, kind)
    try:
        fetched = source.fetch(kind, namespace, name)
    except (httpx.HTTPError, ValueError) as err:
        return [], [f"prometheus: {type(err).__name__}: {err}"]
    # Prometheus keeps a deleted pod's series for minutes: only pods ready now count.
    ready = {t.pod for t in targets}
    return [m for m in fetched if m.pod in ready], []


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def step(
    isvc: InferenceService,
    pods: list[dict],
    metrics: list[ReplicaMetrics],
    memory: Memory,
    now: float,
) -> Step:
    """One autoscaling decision, pure: what to write given what was read."""
    times, counted = new_interruptions(pods, memory.counted, now)
    obs = Observation(now, metrics, pod_states(pods, now), times, activator_waiting=None)
    decision = decide(policy_spec(isvc.spec), obs, memory.state)
    last = isvc.status.last_scaling_decision
    status = None
    if last is None or (last.dedicated, last.spot) != (decision.dedicated, decision.spot):
        status = {
            "time": rfc3339(now),
            "dedicated": decision.dedicated,
            "spot": decision.spot,
            "reason": decision.reason,
            "message": decision.message()[:1024],
        }
    return Step(decision, obs, Memory(decision.state, counted), status)


@kopf.timer(GROUP, VERSION, PLURAL, interval=PERIOD_S, initial_delay=PERIOD_S)
def autoscale(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: logging.Logger,
    service_pods: kopf.Index,
    **_: Any,
) -> None:
    try:
        isvc = InferenceService.model_validate(dict(body))
    except ValidationError:
        return  # the reconcile reports InvalidSpec; nothing to scale
    kube, ns, name = memo.runtime.kube, isvc.namespace, isvc.name
    pods = snapshot(service_pods, (ns, name))
    kind = isvc.spec.engine.kind
    metrics, errors = read_metrics(memo.runtime.prometheus, kind, ns, name, pods)
    for error in errors:
        log.warning("%s/%s metrics: %s", ns, name, error)
    memory = memo.get("autoscaler") or Memory()
    result = step(isvc, pods, metrics, memory, time.time())
    memo["autoscaler"] = result.memory
    METRICS.record(ns, name, policy_spec(isvc.spec), result.observation, result.decision)
    if result.status is not None:
        written = kube.patch_status(ns, name, {"lastScalingDecision": result.status})
        kopf.event(
            body, type="Normal", reason=result.decision.reason, message=result.status["message"]
        )
        running = plan_replicas(isvc)  # what the pools were last sized to
        if (result.decision.dedicated, result.decision.spot) == (running.dedicated, running.spot):
            return  # e.g. the first decision holding the fleet: nothing to resize
        if written is not None:  # resize the pools now: status writes trigger no handler
            run_reconcile(written, memo.runtime, logger)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget(namespace: str, name: str, **_: Any) -> None:
    METRICS.forget(namespace, name)
