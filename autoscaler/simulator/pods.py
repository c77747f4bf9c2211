"""Pods of the two pool Deployments, and the capacity they land on.

Lifecycle: pending (waiting for a node) -> starting (scheduled: the GPU is paid for, the
model loads) -> ready (serving); a pod may then be leaving (a scale-down drains it for the
grace period; a spot interruption gives its notice period) and is gone when that ends
(whatever it still holds is retried by its clients).

Scale-down picks pods the way a ReplicaSet does: unscheduled first, then not-ready, then
the most recently ready.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from infleet.autoscaler.simulator.replica import SimReplica
from infleet.autoscaler.view import PENDING, READY, STARTING, PodState


@dataclass(slots=True)
class Pod:
    name: str
    pool: str
    phase: str
    since: float
    schedulable_at: float  # earliest time a node can take it (provisioning delay)
    ready_at: float = 0.0
    leave_at: float = float("inf")  # set when the pod starts leaving
    leaving: bool = False
    notice: bool = False  # leaving because its spot node is reclaimed
    replica: SimReplica | None = None
    created: float = 0.0

    def state(self) -> PodState:
        return PodState(self.name, self.pool, self.phase, self.since, self.notice, self.created)


@dataclass(slots=True)
class SpotMarket:
    """Spot capacity. Nodes are reclaimed one by one (a rate per replica-hour) and, during
    a storm, faster and in waves (a zone running short takes a fraction of the spot nodes
    at once); a reclaimed node's capacity stays gone for a while, so replacements can hang
    pending."""

    interruptions_per_hour: float = 0.0
    notice_s: float = 30.0
    reclaim_mean_s: float = 0.0  # how long a reclaimed node's capacity stays gone
    capacity: int = 1_000_000
    storm_start_s: float = float("inf")
    storm_end_s: float = float("inf")
    storm_interruptions_per_hour: float = 0.0
    waves_per_hour: float = 0.0  # during the storm
    wave_fraction: float = 0.0  # of the spot nodes each wave reclaims
    next_wave: float = float("inf")
    reclaimed_until: list[float] = field(default_factory=list)

    def available(self, now: float, in_use: int) -> int:
        self.reclaimed_until = [t for t in self.reclaimed_until if t > now]
        return self.capacity - in_use - len(self.reclaimed_until)

    def in_storm(self, now: float) -> bool:
        return self.storm_start_s <= now < self.storm_end_s

    def hazard(self, now: float, dt: float) -> float:
        """Probability that one spot node is reclaimed one by one within [now, now+dt)."""
        rate = self.storm_interruptions_per_hour if self.in_storm(now) else 0.0
        return (rate or self.interruptions_per_hour) * dt / 3600.0

    def wave_due(self, now: float, rng: random.Random) -> bool:
        """Whether a wave strikes now (waves come as a Poisson process during the storm)."""
        if self.waves_per_hour <= 0 or not self.in_storm(now):
            return False
        if self.next_wave == float("inf") or self.next_wave < self.storm_start_s:
            self.next_wave = now + rng.expovariate(self.waves_per_hour / 3600.0)
        due = now >= self.next_wave
        if due:
            self.next_wave = now + rng.expovariate(self.waves_per_hour / 3600.0)
        return due

    def reclaim(self, now: float, rng: random.Random) -> None:
        if self.reclaim_mean_s > 0:
            self.reclaimed_until.append(now + rng.expovariate(1.0 / self.reclaim_mean_s))


@dataclass(slots=True)
class PodTimings:
    provision_s: float = 60.0  # node and image ready for a new pod
    startup_s: float = 120.0  # engine start and model load to readiness
    grace_s: float = 30.0  # drain on scale-down (the engine's --shutdown-grace-seconds)


def pick_victims(pods: list[Pod], count: int) -> list[Pod]:
    """ReplicaSet order: pending first, then starting, then the newest ready."""
    rank = {PENDING: 0, STARTING: 1, READY: 2}
    ordered = sorted(pods, key=lambda p: (rank[p.phase], -p.since))
    return ordered[:count]
