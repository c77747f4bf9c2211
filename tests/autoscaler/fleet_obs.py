"""Observations of a made-up fleet, for policy tests that need no simulator."""

from __future__ import annotations

from infleet.autoscaler.view import PENDING, READY, Observation, PodState, ReplicaMetrics


def pods(dedicated: int, spot: int, since: float = -600.0) -> list[PodState]:
    return [PodState(f"d{i}", "dedicated", READY, since) for i in range(dedicated)] + [
        PodState(f"s{i}", "spot", READY, since) for i in range(spot)
    ]


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


def pending(name: str, since: float) -> PodState:
    return PodState(name, "spot", PENDING, since)


def observe_split(
    now: float,
    fleet: list[PodState],
    waiting: float,
    running: float,
    counters: dict[str, float],
) -> Observation:
    """A fleet-wide queue and running set split evenly over the ready pods; `counters` holds
    each pod's finished-requests counter (a new pod starts from zero)."""
    ready = [p for p in fleet if p.phase == READY and not p.notice]
    n = max(len(ready), 1)
    replicas = [
        ReplicaMetrics(
            p.name, p.pool, waiting / n, running / n, 0.3, 0.0, counters.get(p.name, 0.0)
        )
        for p in ready
    ]
    return Observation(now, replicas, fleet, [], 0.0)
