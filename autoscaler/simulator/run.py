"""Runs one scenario under one policy: the clock, the decisions, the accounting."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

from infleet.autoscaler.simulator.faults import Fault, FaultPlan
from infleet.autoscaler.simulator.fleet import Fleet
from infleet.autoscaler.simulator.pods import SpotMarket
from infleet.autoscaler.simulator.policies import SimPolicy, make_policy
from infleet.autoscaler.simulator.recorder import LatencyRecorder
from infleet.autoscaler.simulator.scenario import Scenario
from infleet.autoscaler.simulator.service_model import prior_of
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.view import POOLS

TIMELINE_S = 60.0


@dataclass(slots=True)
class Timeline:
    """Per-minute samples for the plot."""

    t: list[float] = field(default_factory=list)
    load_rps: list[float] = field(default_factory=list)
    ready: dict[str, list[int]] = field(default_factory=lambda: {p: [] for p in POOLS})
    desired: dict[str, list[int]] = field(default_factory=lambda: {p: [] for p in POOLS})
    attainment: list[float | None] = field(default_factory=list)
    ttft_p95_s: list[float] = field(default_factory=list)


@dataclass(slots=True)
class RunOutcome:
    scenario: Scenario
    policy: str
    seed: int
    rec: LatencyRecorder
    fleet: Fleet
    timeline: Timeline
    replica_seconds: float
    peak_replicas: int
    engine_preemptions: int
    faults: list[FaultOutcome] = field(default_factory=list)
    policy_at_end: SimPolicy | None = None  # as it ended (our policy's state, to inspect)


@dataclass(slots=True)
class FaultOutcome:
    """What happened while a fault lasted: the attainment of the requests that arrived
    in its window, and the replicas decided (at its start, and the fewest during it)."""

    fault: Fault
    window: list[float]  # the recorder's [start, end, attained, judged]
    desired_at_start: int = 0
    desired_min: int | None = None

    def note(self, t: float, desired: int) -> None:
        if t < self.fault.start_s:
            self.desired_at_start = desired
        elif t < self.fault.end_s:
            low = self.desired_min
            self.desired_min = desired if low is None else min(low, desired)


def policy_spec_for(scenario: Scenario) -> PolicySpec:
    """The scenario's spec with its capacity prior: the replica model's own figures unless
    the scenario gives one (a calibrated deployment, as `--calibration` makes)."""
    prior = scenario.prior or prior_of(scenario.model)
    tuning = dataclasses.replace(scenario.spec.tuning, prior=prior)
    return dataclasses.replace(scenario.spec, tuning=tuning)


def simulate(
    scenario: Scenario, policy_name: str, seed: int, tuned: dict | None = None
) -> RunOutcome:
    """`tuned` overrides the policy's committed parameters (the tuning command's grid)."""
    rng = random.Random(seed)
    target = scenario.spec.slo.ttft_p95_seconds
    m = scenario.market
    market = SpotMarket(
        interruptions_per_hour=m.interruptions_per_hour,
        notice_s=m.notice_s,
        reclaim_mean_s=m.reclaim_mean_s,
        capacity=m.capacity,
        storm_start_s=m.storm_start_s,
        storm_end_s=m.storm_end_s,
        storm_interruptions_per_hour=m.storm_interruptions_per_hour,
        waves_per_hour=m.waves_per_hour,
        wave_fraction=m.wave_fraction,
    )
    fleet = Fleet(
        scenario.model,
        scenario.timings,
        market,
        LatencyRecorder(target),
        rng,
        faults=FaultPlan(scenario.faults),
    )
    spec = policy_spec_for(scenario)
    policy = make_policy(policy_name, spec, scenario.peak_replicas, tuned)
    arrivals, dt = scenario.arrivals, scenario.tick_s
    outcomes: list[FaultOutcome] = []
    timeline = Timeline()
    step = -int(scenario.warmup_s / dt)
    end_step = int(scenario.duration_s / dt)
    next_decision = step * dt
    next_sample = TIMELINE_S
    arrived_at_sample = 0
    opening_rng = random.Random(seed)
    opening = sum(st.cohorts(0.0, 60.0, 1, opening_rng)[0][0] for st in arrivals.streams) / 60.0
    fleet.warm_start("dedicated", math.ceil(opening / scenario.replica_rps), step * dt)
    replica_seconds, peak = 0.0, 0
    while step < end_step:
        now = step * dt
        if step == 0:  # the warm-up is over: measure from here
            fleet.reset_accounting(LatencyRecorder(target, start_s=0.0))
            outcomes = [
                FaultOutcome(f, fleet.rec.watch(f.start_s, f.end_s)) for f in scenario.faults
            ]
        if now >= next_decision:
            obs = fleet.observe(now)
            dedicated, spot = policy.decide(obs, fleet.utilization())
            fleet.scale("dedicated", dedicated, now)
            fleet.scale("spot", spot, now)
            next_decision += policy.period_s
            for outcome in outcomes:
                outcome.note(now, dedicated + spot)
        fleet.advance(now, dt, arrivals)
        if now >= 0:
            serving = fleet.serving("dedicated") + fleet.serving("spot")
            replica_seconds += serving * dt
            peak = max(peak, serving)
        if now + dt >= next_sample:
            timeline.t.append(next_sample)
            timeline.load_rps.append((fleet.arrived - arrived_at_sample) / TIMELINE_S)
            arrived_at_sample = fleet.arrived
            for pool in POOLS:
                timeline.ready[pool].append(fleet.serving(pool))
                timeline.desired[pool].append(fleet.desired[pool])
            attained, p95 = fleet.rec.take_minute()
            timeline.attainment.append(attained)
            timeline.ttft_p95_s.append(p95)
            next_sample += TIMELINE_S
        step += 1
    return RunOutcome(
        scenario,
        policy_name,
        seed,
        fleet.rec,
        fleet,
        timeline,
        replica_seconds,
        peak,
        fleet.engine_preemptions(),
        outcomes,
        policy,
    )
