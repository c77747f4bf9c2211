"""A simulated scenario: one InferenceService, its load, its spot market, its prices, and
the helpers the built-in scenarios (`scenarios.py`) are made with."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from infleet.autoscaler.adapter import spec_from
from infleet.autoscaler.simulator.arrivals import (
    Arrivals,
    RateArrivals,
    TokenShape,
    TraceArrivals,
    diurnal_rate,
)
from infleet.autoscaler.simulator.faults import Fault
from infleet.autoscaler.simulator.pods import PodTimings
from infleet.autoscaler.simulator.service_model import ReplicaModel
from infleet.autoscaler.spec import CapacityPrior, PolicySpec

HOUR = 3600.0


@dataclass(slots=True)
class MarketSpec:
    interruptions_per_hour: float = 0.05  # one node at a time, per spot replica-hour
    notice_s: float = 30.0  # GKE's spot preemption notice
    reclaim_mean_s: float = 0.0
    capacity: int = 1_000_000
    storm_start_s: float = float("inf")
    storm_end_s: float = float("inf")
    storm_interruptions_per_hour: float = 0.0
    waves_per_hour: float = 0.0
    wave_fraction: float = 0.0


@dataclass(slots=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    arrivals: Arrivals
    peak_rps: float
    spec: PolicySpec
    market: MarketSpec = field(default_factory=MarketSpec)
    timings: PodTimings = field(default_factory=PodTimings)
    model: ReplicaModel = field(default_factory=ReplicaModel)
    price_dedicated: float = 5.0  # per GPU-hour
    price_spot: float = 2.0
    tick_s: float = 2.0
    warmup_s: float = 1200.0  # simulated before t=0 at the opening load, not measured
    replica_rps: float = 12.0  # load one replica carries within the SLO: sizes static-peak
    static_replicas: int | None = None  # static-peak's size where replica_rps does not say
    faults: tuple[Fault, ...] = ()
    # The policy's capacity prior; None: the replica model's own figures (a calibrated
    # deployment, as with `--calibration`).
    prior: CapacityPrior | None = None

    @property
    def peak_replicas(self) -> int:
        if self.static_replicas is not None:
            return self.static_replicas
        return math.ceil(self.peak_rps / self.replica_rps - 1e-9)


def default_spec() -> PolicySpec:
    return spec_from(
        scaling={"minReplicas": 2, "maxReplicas": 60, "targetQueueDepth": 8},
        capacity={"dedicated": {"min": 2}, "spot": {"enabled": True, "max": 60}},
        slo={
            "ttftP95Seconds": 1.0,
            "spotPreemptionsPerReplicaHour": 0.2,
            "requestPreemptionRatio": 0.01,
        },
    )


def peak_of(rate: Callable[[float], float], duration_s: float) -> float:
    """The highest rate, sampled every 5 s (bursts overlap for as little as that)."""
    return max(rate(t) for t in range(0, int(duration_s), 5))


def rate_scenario(name: str, description: str, hours: float, rate, shape=None, **kw) -> Scenario:
    arrivals = RateArrivals(rate, shape or TokenShape())
    return Scenario(name, description, hours * HOUR, arrivals, peak_of(rate, hours * HOUR),
                    default_spec(), **kw)  # fmt: skip


def random_bursts(
    seed: int, hours: float, mean_gap_s: float, length_s: float, factor: float
) -> tuple[tuple[float, float, float], ...]:
    """Bursts (start_s, length_s, factor) at Poisson times over `hours`."""
    rng = random.Random(seed)
    bursts, t = [], 0.0
    while t < hours * HOUR:
        t += rng.expovariate(1 / mean_gap_s)
        bursts.append((t, length_s, factor))
    return tuple(bursts)


def bursts_scenario(
    name: str, description: str, hours: float, base_rps: float, seed: int,
    mean_gap_s: float, length_s: float, factor: float,
) -> Scenario:  # fmt: skip
    """A flat base with bursts (`factor` x for `length_s`) at Poisson times."""
    bursts = random_bursts(seed, hours, mean_gap_s, length_s, factor)
    rate = diurnal_rate(base_rps, peak_to_trough=1.0, bursts=bursts)
    return rate_scenario(name, description, hours, rate)


def with_trace(scenario: Scenario, trace: TraceArrivals) -> Scenario:
    """The scenario's fleet and market, fed by a trace instead of its rate curve."""
    per_minute: dict[int, int] = {}
    for t in trace.times:
        per_minute[int(t // 60)] = per_minute.get(int(t // 60), 0) + 1
    peak = max(per_minute.values()) / 60.0
    return dataclasses.replace(
        scenario,
        name=f"{scenario.name}+trace",
        description=f"{len(trace.times)} requests replayed from a trace",
        duration_s=trace.duration_s + 60.0,  # the last requests arrive and finish
        arrivals=trace,
        peak_rps=peak,
        warmup_s=0.0,
        static_replicas=None,
    )
