"""Observations of a made-up fleet, for policy tests that need no simulator."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from hypothesis import HealthCheck, settings

from infleet.autoscaler.policy import Decision, PolicyState, decide
from infleet.autoscaler.spec import CapacityPrior, PolicySpec, Tuning
from infleet.autoscaler.view import PENDING, READY, STARTING, Observation, PodState, ReplicaMetrics

PERIOD = 10.0
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEFAULT_SHAPE = (1024.0, 256.0)


def pods(dedicated: int, spot: int, since: float = -600.0) -> list[PodState]:
    return [PodState(f"d{i}", "dedicated", READY, since) for i in range(dedicated)] + [
        PodState(f"s{i}", "spot", READY, since) for i in range(spot)
    ]


def loading(n: int, phase: str = STARTING, since: float = -60.0) -> list[PodState]:
    return [PodState(f"l{i}", "spot", phase, since, created=since) for i in range(n)]


def pending(name: str, since: float) -> PodState:
    return PodState(name, "spot", PENDING, since)


# The knobs these tests' numbers assume, pinned so that retuning (autoscaler/tuned.py)
# does not move them: the behaviours under test do not depend on the tuned values.
PINNED = Tuning(target_utilization=0.7, panic_threshold=2.0, burst_hold_gaps=1.5)


def with_prior(
    spec: PolicySpec, requests_per_s: float, tuning: Tuning | None = PINNED
) -> PolicySpec:
    """The spec with a capacity prior that says a replica serves `requests_per_s` of the
    default request shape (1024 prompt + 256 output tokens), on the pinned knobs (None:
    the spec's own, the tuned ones the operator runs)."""
    scale = requests_per_s / CapacityPrior().requests_per_s(*DEFAULT_SHAPE)
    prior = CapacityPrior(30_000.0 * scale, 11_000.0 * scale)
    knobs = tuning or spec.tuning
    return dataclasses.replace(spec, tuning=dataclasses.replace(knobs, prior=prior))


def observe(
    now: float,
    fleet: list[PodState],
    waiting: float,
    running: float,
    finished: float,
    activator: float | None = 0.0,
    interruptions: list[float] | None = None,
) -> Observation:
    """Every ready pod reports the same queue; `finished` is each pod's counter."""
    replicas = [
        ReplicaMetrics(p.name, p.pool, waiting, running, 0.3, 0.0, finished)
        for p in fleet
        if p.phase == READY and not p.notice
    ]
    return Observation(now, replicas, fleet, interruptions or [], activator)


class FluidFleet:
    """A fleet that serves: `arrivals(t)` req/s of `shape(t)` come in, each ready replica
    finishes up to `capacity(t, shape)` req/s, the rest waits, and requests run 5 s. Pods
    follow the decisions after `start_s` (0: at once). Its engines export every counter
    (finished requests, prompt and output tokens), so the policy sees request shapes."""

    def __init__(
        self,
        spec: PolicySpec,
        arrivals: Callable[[float], float],
        capacity: Callable[[float, tuple[float, float]], float],
        size: int,
        shape: Callable[[float], tuple[float, float]] = lambda t: DEFAULT_SHAPE,
        start_s: float = 0.0,
    ) -> None:
        self.spec, self.arrivals, self.capacity, self.shape = spec, arrivals, capacity, shape
        self.start_s = start_s
        self.fleet = pods(size, 0)
        self.counters: dict[str, list[float]] = {}
        self.waiting = 0.0
        self.starting: list[PodState] = []  # created, ready at created + start_s

    def observation(self, now: float, blind: bool = False) -> Observation:
        for p in [p for p in self.starting if p.created + self.start_s <= now]:
            self.starting.remove(p)
            self.fleet.append(
                PodState(p.name, p.pool, READY, p.created + self.start_s, created=p.created)
            )
        ready = [p for p in self.fleet if p.phase == READY and not p.notice]
        n = max(len(ready), 1)
        rate, shape = self.arrivals(now), self.shape(now)
        served = min(rate + self.waiting / PERIOD, len(ready) * self.capacity(now, shape))
        self.waiting = max(0.0, self.waiting + (rate - served) * PERIOD)
        replicas = []
        # The queue stays on the replicas that held it (a real engine's queue does not
        # move to a replica that just started): spread over those seen before.
        holders = [p.name for p in ready if p.name in self.counters] or [p.name for p in ready]
        for p in ready:
            c = self.counters.setdefault(p.name, [0.0, 0.0, 0.0])
            done = served * PERIOD / n
            c[0] += done
            c[1] += done * shape[0]
            c[2] += done * shape[1]
            if not blind:
                waiting = self.waiting / len(holders) if p.name in holders else 0.0
                metrics = ReplicaMetrics(p.name, p.pool, waiting, served * 5.0 / n, 0.3, 0.0, *c)
                replicas.append(metrics)
        return Observation(now, replicas, [*self.fleet, *self.starting], [], 0.0)

    def follow(self, d: Decision, now: float) -> None:
        """The Deployments converge on the decision: new pods are ready `start_s` after
        it; a scale-down removes loading pods first, as a ReplicaSet does."""
        for i in range(d.total - len(self.fleet) - len(self.starting)):
            name = f"n{now:.0f}-{i}"
            if self.start_s <= 0:
                self.fleet.append(PodState(name, "dedicated", READY, now, created=now))
            else:
                self.starting.append(PodState(name, "dedicated", STARTING, now, created=now))
        while len(self.fleet) + len(self.starting) > max(d.total, 1):
            (self.starting or self.fleet).pop()


def run(
    spec: PolicySpec,
    fluid: FluidFleet,
    periods: int,
    state: PolicyState | None = None,
    t0: float = 0.0,
    blind: Callable[[float], bool] = lambda t: False,
) -> Iterator[Decision]:
    """Decide every PERIOD on the fluid fleet, which follows each decision."""
    state = state or PolicyState()
    for i in range(periods):
        now = t0 + i * PERIOD
        d = decide(spec, fluid.observation(now, blind(now)), state)
        state = d.state
        yield d
        fluid.follow(d, now)
