"""The reconcile's autoscale step: the service's pods and engine metrics in, a decision out.

At most once per PERIOD_S per service (the controller's tick enqueues every service that
often; reconciles for other events in between skip this step): take the pods from the
operator's watch-fed pod index, read the ready ones' engine metrics (scraping each pod's
/metrics by default, or one Prometheus HTTP API with `infleet operator --prometheus-url`),
and run `infleet.autoscaler.policy.decide` (the function the simulator runs). When the
per-pool counts change, the reconcile writes them to `status.lastScalingDecision` with
its status and posts an Event; the next reconcile (the status write's own watch event)
sizes the pool Deployments from it (`infleet.operator.replicas.plan_replicas`) with the
server-side apply that owns their `replicas`. One writer for a Deployment's replicas.

The policy's memory (windows, learned capacity, interruption history) lives in this
process, and only while it leads: a new leader starts it afresh and the policy then holds
the fleet until it has seen a full window. Only the leader exports the autoscaler's
series; a replica that loses the lease drops them with the memory. `spec.replicas`
(kubectl scale) pins the total; the step still splits it between the pools.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx

from infleet.api import InferenceService
from infleet.autoscaler.adapter import policy_spec
from infleet.autoscaler.exporter import AutoscalerMetrics
from infleet.autoscaler.kube_view import new_interruptions, pod_states, scrape_targets
from infleet.autoscaler.policy import Decision, PolicyState, decide
from infleet.autoscaler.prometheus_api import PrometheusSource
from infleet.autoscaler.scrape import scrape
from infleet.autoscaler.view import Observation, ReplicaMetrics
from infleet.operator.router_demand import held_requests

PERIOD_S = 10.0
METRICS = AutoscalerMetrics()
# Scrape failures go to the operator's log only, not to Events: one per unreachable
# replica every period would flood them.
log = logging.getLogger(__name__)
Key = tuple[str, str]


@dataclass(slots=True)
class Memory:
    """What the step keeps per InferenceService between decisions."""

    state: PolicyState = field(default_factory=PolicyState)
    counted: set[str] = field(default_factory=set)  # uids of interrupted pods counted
    decided_at: float = float("-inf")


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
    activator_waiting: float | None = None,
) -> Step:
    """One autoscaling decision, pure: what to write given what was read.

    `activator_waiting`: the requests the service's router holds (operator/router_demand.py);
    None without a router, or with one that did not answer."""
    times, counted = new_interruptions(pods, memory.counted, now)
    states = pod_states(pods, now)
    obs = Observation(now, metrics, states, times, activator_waiting=activator_waiting)
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
    return Step(decision, obs, Memory(decision.state, counted, now), status)


class Autoscaler:
    """The step with its memory per service, and the series it exports (leader only)."""

    def __init__(
        self,
        prometheus: PrometheusSource | None = None,
        period_s: float = PERIOD_S,
        metrics: AutoscalerMetrics = METRICS,
        clock: Callable[[], float] = time.time,
        fence: Callable[[], None] = lambda: None,
    ) -> None:
        self.prometheus, self.period_s, self.metrics = prometheus, period_s, metrics
        self._clock, self._fence = clock, fence
        self._memory: dict[Key, Memory] = {}
        self._guard = threading.Lock()  # over _memory and the exported series

    def run(
        self, key: Key, isvc: InferenceService, pods: list[dict], routers: list[dict] | None = None
    ) -> Step | None:
        """A decision when one is due for this service, else None. `routers`: its router's
        pods when it has one (their held requests are the activator's queue)."""
        now = self._clock()
        with self._guard:
            memory = self._memory.get(key) or Memory()
        if now - memory.decided_at < self.period_s:
            return None
        kind = isvc.spec.engine.kind
        metrics, errors = read_metrics(self.prometheus, kind, *key, pods)
        for error in errors:
            log.warning("%s/%s metrics: %s", *key, error)
        held = None if routers is None else held_requests(routers)
        result = step(isvc, pods, metrics, memory, now, held)
        with self._guard:
            # Only a leader exports decisions: the fence fails before a replica that lost
            # the lease clears them, so nothing is recorded after that clear.
            self._fence()
            self._memory[key] = result.memory
            spec = policy_spec(isvc.spec)
            self.metrics.record(*key, spec, result.observation, result.decision)
        return result

    def forget(self, key: Key) -> None:
        """The service is gone: its memory and its series go."""
        with self._guard:
            self._memory.pop(key, None)
            self.metrics.forget(*key)

    def clear(self) -> None:
        """This replica no longer leads: every memory and series goes."""
        with self._guard:
            for key in self._memory:
                self.metrics.forget(*key)
            self._memory.clear()
