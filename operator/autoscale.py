"""The reconcile's autoscale step: the service's pods and engine metrics in, a decision out.

At most once per PERIOD_S per service (the controller's tick enqueues every service that
often; reconciles for other events in between skip this step): take the pods from the
operator's watch-fed pod index, read the ready ones' engine metrics (through one
`ScrapePool` per process, which isolates services and backs off failing pods; or one
Prometheus HTTP API with `infleet operator --prometheus-url`, which also gives the
service's TTFT p95), and run `infleet.autoscaler.policy.decide` (the function the
simulator runs). When the per-pool counts change, the reconcile writes them to
`status.lastScalingDecision` with its status and posts an Event; the next reconcile (the
status write's own watch event) sizes the pool Deployments from it
(`infleet.operator.replicas.plan_replicas`) with the server-side apply that owns their
`replicas`. One writer for a Deployment's replicas.

Every decision also says whether the service can be seen (the `MetricsUnavailable`
condition, `infleet.autoscaler.health`) and counts the failed reads. The policy's memory
lives in this process and, at most once a minute or when the decision moves, in the
owned ConfigMap NAME-autoscaler (operator/autoscale_state.py): a new leader or a
restarted operator resumes from it, and starts cold (holding the replicas the
Deployments ask for) when there is none or it cannot be read. Only the leader exports
the autoscaler's series. `spec.replicas` (kubectl scale) pins the total; the step still
splits it between the pools.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from infleet.api import InferenceService
from infleet.autoscaler.adapter import policy_spec
from infleet.autoscaler.exporter import AutoscalerMetrics
from infleet.autoscaler.health import ConditionState, MetricsFailure, metrics_condition
from infleet.autoscaler.kube_view import new_interruptions, pod_states, scrape_targets
from infleet.autoscaler.policy import Decision, PolicyState, decide
from infleet.autoscaler.prometheus_api import PrometheusSource
from infleet.autoscaler.scrape import ScrapePool
from infleet.autoscaler.view import Observation, ReplicaMetrics
from infleet.operator.autoscale_state import WRITE_EVERY_S, render_state, restored_state
from infleet.operator.router_demand import held_requests

PERIOD_S = 10.0
METRICS = AutoscalerMetrics()
# Read failures go to the operator's log, the failures counter and the MetricsUnavailable
# condition, not to Events: one per unreachable replica every period would flood them.
log = logging.getLogger(__name__)
Key = tuple[str, str]
Obj = dict[str, Any]


@dataclass(slots=True)
class Memory:
    """What the step keeps per InferenceService between decisions."""

    state: PolicyState = field(default_factory=PolicyState)
    counted: set[str] = field(default_factory=set)  # uids of interrupted pods counted
    decided_at: float = float("-inf")
    saved_at: float = float("-inf")  # the state's last write to its ConfigMap


@dataclass(slots=True)
class Read:
    """One decision's metrics read."""

    metrics: list[ReplicaMetrics] = field(default_factory=list)
    failures: list[MetricsFailure] = field(default_factory=list)  # reads tried that failed
    waiting: list[MetricsFailure] = field(default_factory=list)  # not tried: backing off
    ttft_p95_s: float | None = None  # the service's, from Prometheus (None: not known)


@dataclass(slots=True)
class Step:
    decision: Decision
    observation: Observation
    memory: Memory
    status: dict[str, Any] | None  # lastScalingDecision to write, None: unchanged
    condition: ConditionState  # MetricsUnavailable
    state: Obj | None = None  # the state's ConfigMap to apply, None: not due


def desired_replicas(deployments: dict[str, Obj | None]) -> int | None:
    """What the pool Deployments ask for now (None: none exists yet)."""
    found = [d for d in deployments.values() if d is not None]
    if not found:
        return None
    return sum(int((d.get("spec") or {}).get("replicas") or 0) for d in found)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def step(
    isvc: InferenceService,
    pods: list[dict],
    read: Read,
    memory: Memory,
    now: float,
    desired: int | None = None,
    activator_waiting: float | None = None,
) -> Step:
    """One autoscaling decision, pure: what to write given what was read.

    `activator_waiting`: the requests the service's router holds (operator/router_demand.py);
    None without a router, or with one that did not answer."""
    times, counted = new_interruptions(pods, memory.counted, now)
    obs = Observation(
        now,
        read.metrics,
        pod_states(pods, now),
        times,
        activator_waiting=activator_waiting,
        ttft_p95_s=read.ttft_p95_s,
        desired=desired,
    )
    spec = policy_spec(isvc.spec)
    decision = decide(spec, obs, memory.state)
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
    load = decision.load
    condition = metrics_condition(
        load.blind_s,
        load.serving,
        load.unknown,
        read.failures + read.waiting,
        now,
        spec.tuning.blind_grace_s,
    )
    moved = memory.state.total != decision.total
    due = moved or now - memory.saved_at >= WRITE_EVERY_S
    state = render_state(isvc, decision.state) if due else None
    return Step(
        decision,
        obs,
        Memory(decision.state, counted, now, memory.saved_at),
        status,
        condition,
        state,
    )


class Autoscaler:
    """The step with its memory per service, and the series it exports (leader only)."""

    def __init__(
        self,
        prometheus: PrometheusSource | None = None,
        period_s: float = PERIOD_S,
        metrics: AutoscalerMetrics = METRICS,
        clock: Callable[[], float] = time.time,
        fence: Callable[[], None] = lambda: None,
        pool: ScrapePool | None = None,
    ) -> None:
        self.prometheus, self.period_s, self.metrics = prometheus, period_s, metrics
        self._clock, self._fence = clock, fence
        # Unused with Prometheus (its executor starts no thread until a first read).
        self._pool = pool or ScrapePool()
        self._memory: dict[Key, Memory] = {}
        self._guard = threading.Lock()  # over _memory and the exported series

    def read(self, kind: str, key: Key, pods: list[dict], now: float) -> Read:
        """The ready replicas' engine metrics, and what failed."""
        targets = scrape_targets(pods)
        if self.prometheus is None:
            result = self._pool.scrape("/".join(key), targets, kind, now)
            return Read(result.metrics, result.failures, result.waiting)
        metrics, failures = self.prometheus.read(kind, *key)
        # Prometheus keeps a deleted pod's series for minutes: only pods ready now count.
        ready = {t.pod for t in targets}
        metrics = [m for m in metrics if m.pod in ready]
        return Read(metrics, failures, [], self.prometheus.ttft_p95(kind, *key))

    def _memory_for(self, key: Key, children: list[Obj]) -> Memory:
        """This process's memory of the service, else what its ConfigMap kept, else none
        (a cold start)."""
        with self._guard:
            memory = self._memory.get(key)
        if memory is not None:
            return memory
        state, problem = restored_state(key[1], children)
        if problem is not None:
            log.warning("%s/%s: autoscaler state not restored, starting cold: %s", *key, problem)
        elif state is not None:
            log.info("%s/%s: autoscaler state restored from its ConfigMap", *key)
        return Memory(state or PolicyState())

    def run(
        self,
        key: Key,
        isvc: InferenceService,
        pods: list[dict],
        deployments: dict[str, Obj | None] | None = None,
        children: list[Obj] | None = None,
        routers: list[Obj] | None = None,
    ) -> Step | None:
        """A decision when one is due for this service, else None. `deployments` (the
        pools' live Deployments) give a cold start the replicas asked for; `children`
        (the cached ones) hold the state a previous leader kept; `routers`: its router's
        pods when it has one (their held requests are the activator's queue)."""
        now = self._clock()
        memory = self._memory_for(key, children or [])
        if now - memory.decided_at < self.period_s:
            return None
        read = self.read(isvc.spec.engine.kind, key, pods, now)
        for failure in read.failures:
            log.warning("%s/%s metrics: %s: %s", *key, failure.target, failure.message)
        held = None if routers is None else held_requests(routers)
        desired = desired_replicas(deployments or {})
        result = step(isvc, pods, read, memory, now, desired, activator_waiting=held)
        with self._guard:
            # Only a leader exports decisions: the fence fails before a replica that lost
            # the lease clears them, so nothing is recorded after that clear.
            self._fence()
            self._memory[key] = result.memory
            spec = policy_spec(isvc.spec)
            self.metrics.record(*key, spec, result.observation, result.decision)
            self.metrics.record_failures(*key, read.failures)
        return result

    def saved(self, key: Key, now: float) -> None:
        """The state's ConfigMap was written: the next write waits WRITE_EVERY_S."""
        with self._guard:
            memory = self._memory.get(key)
            if memory is not None:
                memory.saved_at = now

    def forget(self, key: Key) -> None:
        """The service is gone: its memory, backoff state and series go."""
        with self._guard:
            self._memory.pop(key, None)
            self.metrics.forget(*key)
        self._pool.forget("/".join(key))

    def clear(self) -> None:
        """This replica no longer leads: every memory and series goes."""
        with self._guard:
            for key in self._memory:
                self.metrics.forget(*key)
            self._memory.clear()
