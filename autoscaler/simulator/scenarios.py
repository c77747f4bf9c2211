"""Built-in scenarios: one InferenceService, its load, its spot market, its prices.

Every scenario serves Llama-3.1-8B-shaped traffic (prompts ~1k tokens, outputs ~256)
on H100-shaped replicas. The spec is what a tenant would write: 2..60 replicas at 64
requests of queue per replica, 2 dedicated as the baseline, spot up to 60, p95 TTFT 1 s,
at most 0.2 spot preemptions per replica-hour. Prices are illustrative list prices
(dedicated $5.00, spot $2.00 per GPU-hour); pass your own on the command line.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from infleet.autoscaler.simulator.arrivals import (
    RateArrivals,
    TokenShape,
    TraceArrivals,
    diurnal_rate,
)
from infleet.autoscaler.simulator.pods import PodTimings
from infleet.autoscaler.simulator.service_model import ReplicaModel
from infleet.autoscaler.spec import CapacitySpec, PolicySpec, ScalingSpec, SloSpec, SpotSpec

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
    arrivals: RateArrivals | TraceArrivals
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

    @property
    def peak_replicas(self) -> int:
        return math.ceil(self.peak_rps / self.replica_rps - 1e-9)


def default_spec() -> PolicySpec:
    return PolicySpec(
        scaling=ScalingSpec(min_replicas=2, max_replicas=60, target_queue_depth=8.0),
        capacity=CapacitySpec(dedicated_min=2, spot=SpotSpec(enabled=True, max=60)),
        slo=SloSpec(
            ttft_p95_s=1.0,
            spot_preemptions_per_replica_hour=0.2,
            request_preemption_ratio=0.01,
        ),
    )


def _peak(rate: Callable[[float], float], duration_s: float) -> float:
    return max(rate(t) for t in range(0, int(duration_s), 30))


def steady() -> Scenario:
    rate = diurnal_rate(240.0, peak_to_trough=1.0)
    return Scenario(
        "steady", "6 h of Poisson load at 240 req/s", 6 * HOUR,
        RateArrivals(rate, TokenShape()), 240.0, default_spec(),
    )  # fmt: skip


DIURNAL_BURSTS = (
    (3.0 * HOUR, 600.0, 2.0),
    (9.5 * HOUR, 900.0, 1.5),
    (14.0 * HOUR, 600.0, 1.3),
    (19.0 * HOUR, 1200.0, 1.4),
)


def diurnal() -> Scenario:
    rate = diurnal_rate(480.0, peak_to_trough=4.0, bursts=DIURNAL_BURSTS)
    return Scenario(
        "diurnal",
        "24 h, 480 req/s peak at 14:00, 4:1 peak to trough, four bursts of 1.3-2x",
        24 * HOUR,
        RateArrivals(rate, TokenShape()),
        _peak(rate, 24 * HOUR),
        default_spec(),
    )


def bursty(seed: int = 7) -> Scenario:
    """A flat base with sudden 3x bursts of 5 minutes, about every 45 minutes."""
    rng = random.Random(seed)
    bursts, t = [], 0.0
    while t < 6 * HOUR:
        t += rng.expovariate(1 / 2700.0)
        bursts.append((t, 300.0, 3.0))
    rate = diurnal_rate(150.0, peak_to_trough=1.0, bursts=tuple(bursts))
    return Scenario(
        "bursty", "6 h at 150 req/s with 3x bursts of 5 min, ~every 45 min", 6 * HOUR,
        RateArrivals(rate, TokenShape()), 450.0, default_spec(),
    )  # fmt: skip


def spot_storm() -> Scenario:
    return Scenario(
        "spot-storm",
        "6 h at 360 req/s; from hour 1 to hour 5 spot nodes are reclaimed at 50% per "
        "replica-hour: 0.1 one by one, 0.4 in waves (one an hour on average, each taking "
        "40% of spot nodes); reclaimed capacity is gone ~30 min; the zone has 32 spot GPUs",
        6 * HOUR,
        RateArrivals(diurnal_rate(360.0, peak_to_trough=1.0), TokenShape()),
        360.0,
        default_spec(),
        market=MarketSpec(
            storm_start_s=1 * HOUR,
            storm_end_s=5 * HOUR,
            storm_interruptions_per_hour=0.1,
            waves_per_hour=1.0,
            wave_fraction=0.4,
            reclaim_mean_s=1800.0,
            capacity=32,
        ),
    )


SCENARIOS = {
    "steady": steady,
    "diurnal": diurnal,
    "bursty": bursty,
    "spot-storm": spot_storm,
}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]()
    except KeyError:
        raise ValueError(f"--scenario {name!r} is not one of: {', '.join(SCENARIOS)}") from None


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
    )
