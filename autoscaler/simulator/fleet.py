"""The simulated fleet: pool Deployments, pods on nodes, routing and the gateway.

Requests go to ready pods at random (a Kubernetes Service). While no pod serves, and for
requests whose pod vanished, a gateway holds them (the activator's job) until a pod is
ready. A client gives up on a request that has not started after `request_timeout_s`
(at the gateway or in an engine's queue), and retries a request cut by a spot
interruption up to `max_retries` times.
"""

from __future__ import annotations

import math
import random
from collections import deque

from infleet.autoscaler.engines import exported_samples, replica_metrics
from infleet.autoscaler.simulator.arrivals import Arrivals
from infleet.autoscaler.simulator.cohort import Cohort
from infleet.autoscaler.simulator.faults import FaultPlan
from infleet.autoscaler.simulator.pods import Pod, PodTimings, SpotMarket, pick_victims
from infleet.autoscaler.simulator.recorder import LatencyRecorder
from infleet.autoscaler.simulator.replica import SimReplica
from infleet.autoscaler.simulator.service_model import ReplicaModel
from infleet.autoscaler.view import PENDING, POOLS, READY, STARTING, Observation


class Fleet:
    def __init__(
        self,
        model: ReplicaModel,
        timings: PodTimings,
        market: SpotMarket,
        rec: LatencyRecorder,
        rng: random.Random,
        max_retries: int = 2,
        request_timeout_s: float = 60.0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.model, self.timings, self.market, self.rec, self.rng = (
            model,
            timings,
            market,
            rec,
            rng,
        )
        self.max_retries, self.request_timeout_s = max_retries, request_timeout_s
        self.faults = faults or FaultPlan()
        self.pods: list[Pod] = []
        self.desired = dict.fromkeys(POOLS, 0)
        self.gateway: deque[Cohort] = deque()
        self.gpu_seconds = dict.fromkeys(POOLS, 0.0)
        self.new_interruptions: list[float] = []
        self.interruptions = self.arrived = self.retried = 0
        self.preemptions_gone = 0  # engine preemptions of replicas that have left
        self._names = 0

    def reset_accounting(self, rec: LatencyRecorder) -> None:
        """Start measuring afresh (after the warm-up); the fleet itself carries on."""
        self.rec = rec
        self.gpu_seconds = dict.fromkeys(POOLS, 0.0)
        self.interruptions = self.arrived = self.retried = 0
        self.preemptions_gone = -sum(p.replica.preemptions for p in self.pods if p.replica)

    def engine_preemptions(self) -> int:
        return self.preemptions_gone + sum(p.replica.preemptions for p in self.pods if p.replica)

    def warm_start(self, pool: str, replicas: int, now: float) -> None:
        """Pods that were already serving when the simulation begins."""
        for _ in range(replicas):
            self._names += 1
            pod = Pod(f"{pool}-{self._names}", pool, READY, now, now, ready_at=now, created=now)
            pod.replica = SimReplica(self.model, self.request_timeout_s)
            self.pods.append(pod)
        self.desired[pool] += replicas

    # -- the Deployments -------------------------------------------------------------
    def scale(self, pool: str, replicas: int, now: float) -> None:
        self.desired[pool] = replicas
        self._reconcile(pool, now)

    def _reconcile(self, pool: str, now: float) -> None:
        active = [p for p in self.pods if p.pool == pool and not p.leaving]
        want = self.desired[pool]
        delay = self.faults.provisioning_delay(now)
        for _ in range(want - len(active)):
            self._names += 1
            at = now + (self.timings.provision_s if delay is None else delay)
            self.pods.append(Pod(f"{pool}-{self._names}", pool, PENDING, now, at, created=now))
        if len(active) > want:
            for pod in pick_victims(active, len(active) - want):
                self._leave(pod, now, self.timings.grace_s)

    def _leave(self, pod: Pod, now: float, delay: float, notice: bool = False) -> None:
        pod.notice, pod.leaving = notice, True
        pod.leave_at = now + delay if pod.replica is not None else now

    # -- one tick --------------------------------------------------------------------
    def advance(self, now: float, dt: float, arrivals: Arrivals) -> None:
        self._lifecycle(now, dt)
        targets, replicas, scheduled = [], [], {"dedicated": 0, "spot": 0}
        for pod in self.pods:
            if pod.phase != PENDING:
                scheduled[pod.pool] += 1
            if pod.replica is not None:
                replicas.append(pod.replica)
                if not pod.leaving:
                    targets.append(pod.replica)
        for pool, count in scheduled.items():
            self.gpu_seconds[pool] += count * dt
        streams = arrivals.streams
        fresh = streams[0].cohorts(now, dt, max(len(targets), 1), self.rng)
        for stream in streams[1:]:
            # Tenants' requests of one tick interleave: one cohort per target (their
            # tokens summed), not one tenant's tick queued behind the other's.
            more = stream.cohorts(now, dt, max(len(targets), 1), self.rng)
            fresh = [
                (a + x, b + y, c + z) for (a, b, c), (x, y, z) in zip(fresh, more, strict=True)
            ]
        for replica, (n, prompt, output) in zip(targets or [None], fresh, strict=True):
            if n:
                self.arrived += n
                cohort = Cohort(now, dt / n, now, dt / n, n, prompt / n, output / n)
                if replica is None:
                    self.gateway.append(cohort)
                else:
                    replica.enqueue(cohort)
        if targets:
            self._flush_gateway(targets)
        else:
            self._expire_gateway(now + dt)
        rec = self.rec
        for replica in replicas:
            replica.tick(now, dt, rec)

    def _lifecycle(self, now: float, dt: float) -> None:
        t, market, spot_in_use, rng = self.timings, self.market, 0, self.rng
        for pod in self.pods:
            if pod.pool == "spot" and pod.phase != PENDING:
                spot_in_use += 1
        gone: list[Pod] = []
        interrupted = False
        hazard = market.hazard(now, dt)
        wave = market.wave_fraction if market.wave_due(now, rng) else 0.0
        if self.faults.reclaim_due(now, dt):
            wave = 1.0  # every spot node at once
        for pod in self.pods:
            if pod.phase == PENDING and now >= pod.schedulable_at and not pod.leaving:
                if pod.pool == "spot":
                    if market.available(now, spot_in_use) <= 0:
                        continue
                    spot_in_use += 1
                pod.phase, pod.since, pod.ready_at = STARTING, now, now + t.startup_s
            elif pod.phase == STARTING and now >= pod.ready_at:
                pod.phase, pod.since = READY, now
                pod.replica = SimReplica(self.model, self.request_timeout_s)
            exposed = pod.pool == "spot" and pod.phase != PENDING and not pod.notice
            if exposed and (rng.random() < hazard or (wave and rng.random() < wave)):
                self.interruptions += 1
                self.new_interruptions.append(now)
                interrupted = True
                market.reclaim(now, rng)
                self._leave(pod, now, market.notice_s, notice=True)
            if now >= pod.leave_at:
                gone.append(pod)
        for pod in gone:
            self.pods.remove(pod)
            if pod.replica is not None:
                self.preemptions_gone += pod.replica.preemptions
                self._retry(pod.replica.evacuate(now))
        if gone or interrupted:
            for pool in POOLS:  # the ReplicaSets replace what left
                self._reconcile(pool, now)

    def _retry(self, cohorts: list[Cohort]) -> None:
        for c in cohorts:
            if c.attempts > self.max_retries:
                self.rec.failed(c.a, c.n)
            else:
                self.retried += c.n
                self.gateway.append(c)

    def _flush_gateway(self, targets: list[SimReplica]) -> None:
        while self.gateway:
            c = self.gateway.popleft()
            parts = min(c.n, len(targets))
            offset = self.rng.randrange(len(targets))
            for i in range(parts):
                size = c.n // (parts - i)
                piece = c.split(size) if size < c.n else c
                targets[(offset + i) % len(targets)].enqueue(piece)

    def _expire_gateway(self, now: float) -> None:
        deadline = now - self.request_timeout_s
        for c in self.gateway:
            if c.n and c.a < deadline:
                late = c.n if c.g <= 0 else min(c.n, math.floor((deadline - c.a) / c.g) + 1)
                self.rec.failed(c.a, late)
                c.split(late)
        self.gateway = deque(c for c in self.gateway if c.n)

    # -- what the policy sees --------------------------------------------------------
    def observe(self, now: float) -> Observation:
        """What the operator would read: pods from the API, and each replica's metrics
        through the same engine-name table and mapping as a real scrape (our engine's
        names), so the policy sees nothing a real engine does not export."""
        replicas, pods = [], []
        blackout = self.faults.blackout(now)
        for pod in self.pods:
            if pod.leaving and not pod.notice:
                continue  # scaled down: no longer part of the Deployment
            pods.append(pod.state())
            r = pod.replica
            if r is not None and not blackout:
                samples = exported_samples(
                    "infleet",
                    waiting=r.waiting,
                    running=r.run_n,
                    kv_usage=r.kv_usage(),
                    preemptions_total=r.preemptions,
                    requests_total=r.finished,
                    prompt_tokens_total=r.prompted,
                    generation_tokens_total=r.generated,
                )
                replicas.append(replica_metrics("infleet", pod.name, pod.pool, samples))
        interruptions, self.new_interruptions = self.new_interruptions, []
        waiting = float(sum(c.n for c in self.gateway))
        return Observation(
            now,
            replicas,
            pods,
            interruptions,
            activator_waiting=waiting,
            desired=sum(self.desired.values()),
        )

    def utilization(self) -> float:
        """Mean GPU busy fraction of serving pods (what DCGM_FI_DEV_GPU_UTIL reports)."""
        busy = [p.replica.busy for p in self.pods if p.replica is not None and not p.leaving]
        return sum(busy) / len(busy) if busy else 0.0

    def serving(self, pool: str) -> int:
        return sum(1 for p in self.pods if p.pool == pool and p.phase == READY and not p.leaving)
