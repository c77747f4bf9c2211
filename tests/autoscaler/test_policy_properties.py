"""Properties of `decide` that must hold for any spec and any load (hypothesis)."""

from __future__ import annotations

import itertools
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infleet.autoscaler.policy import PolicyState, decide
from infleet.autoscaler.spec import CapacitySpec, PolicySpec, ScalingSpec, SloSpec, SpotSpec
from infleet.autoscaler.view import READY, PodState
from tests.autoscaler.fleet_obs import observe, observe_split, pending, pods

PERIOD = 10.0
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def specs(draw) -> PolicySpec:
    zero = draw(st.booleans())
    lo = 0 if zero else draw(st.integers(1, 6))
    hi = draw(st.integers(max(lo, 1), 40))
    spot_on = draw(st.booleans())
    return PolicySpec(
        ScalingSpec(
            min_replicas=lo,
            max_replicas=hi,
            target_queue_depth=draw(st.integers(1, 32)),
            scale_to_zero=zero,
            scale_to_zero_idle_s=draw(st.sampled_from([30.0, 600.0])),
            scale_up_stabilization_s=draw(st.sampled_from([0.0, 30.0])),
            scale_down_stabilization_s=draw(st.sampled_from([0.0, 300.0])),
        ),
        CapacitySpec(
            dedicated_min=draw(st.integers(0, hi)),
            spot=SpotSpec(enabled=spot_on, max=draw(st.integers(0, hi)) if spot_on else 0),
        ),
        SloSpec(spot_preemptions_per_replica_hour=draw(st.sampled_from([None, 0.0, 0.2]))),
    )


def _run(spec: PolicySpec, loads: list[tuple[float, float, float]], fleet_size: int):
    """Feed `decide` a fleet that follows its decisions and shares a fleet-wide load
    (waiting, running, finished per second); yield (decision, pods)."""
    state, fleet, counters = PolicyState(), pods(fleet_size, 0), {}
    for i, (waiting, running, rate) in enumerate(loads):
        ready = [p.name for p in fleet]
        for name in ready:
            counters[name] = counters.get(name, 0.0) + rate * PERIOD / max(len(ready), 1)
        obs = observe_split(i * PERIOD, fleet, waiting, running, counters)
        d = decide(spec, obs, state)
        state = d.state
        yield d, fleet
        fleet = pods(d.dedicated, d.spot)


loads = st.lists(
    st.tuples(st.floats(0, 4000), st.floats(0, 3000), st.floats(0, 400)), min_size=1, max_size=40
)


@FAST
@given(specs(), loads, st.integers(0, 40))
def test_never_below_min_or_above_max(spec, load, start):
    s = spec.scaling
    for d, fleet in _run(spec, load, start):
        floor = 0 if s.scale_to_zero else s.min_replicas
        assert floor <= d.total <= s.max_replicas
        assert d.spot <= spec.capacity.spot.max
        assert d.dedicated >= 0 and d.spot >= 0
        serving_spot = sum(1 for p in fleet if p.pool == "spot" and p.phase == READY)
        # Dedicated beyond the total only covers spot that cannot serve.
        assert d.dedicated + min(serving_spot, d.spot) <= max(d.total, d.dedicated)
        assert d.dedicated <= d.total + serving_spot


def _fluid_fleet(
    spec: PolicySpec, arrivals: float, capacity: float, size: int, periods: int, learned: bool
):
    """A fleet that serves: `arrivals` req/s come in, each ready replica finishes up to
    `capacity` req/s, the rest waits; a request runs 5 s. Replicas start at once."""
    state = PolicyState(capacity=capacity if learned else None)
    fleet, counters, waiting = pods(size, 0), {}, 0.0
    for i in range(periods):
        n = len(fleet)
        served = min(arrivals + waiting / PERIOD, n * capacity)
        waiting = max(0.0, waiting + (arrivals - served) * PERIOD)
        for p in fleet:
            counters[p.name] = counters.get(p.name, 0.0) + served * PERIOD / max(n, 1)
        d = decide(spec, observe_split(i * PERIOD, fleet, waiting, served * 5.0, counters), state)
        state = d.state
        yield d
        fleet = pods(d.dedicated, d.spot)


@FAST
@given(
    specs(),
    st.floats(0.5, 400),  # requests per second arriving
    st.floats(0.5, 30),  # requests per second one replica finishes at most
    st.integers(1, 30),
)
def test_no_flapping_under_constant_load(spec, arrivals, capacity, size):
    """Constant load, the replica's capacity known: the total settles and stays. It may
    overshoot once (extra replicas drain the queue the start left), never oscillate."""
    totals = [d.total for d in _fluid_fleet(spec, arrivals, capacity, size, 180, True)]
    moves = [b - a for a, b in itertools.pairwise(totals) if b != a]
    reversals = sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))
    assert reversals <= 1, totals
    assert len(set(totals[-60:])) == 1, totals


def test_a_fleet_that_has_not_measured_a_replica_learns_and_settles():
    """Probing down until a queue forms teaches the capacity; then the fleet settles at
    arrivals / (capacity x target utilization) and stays there."""
    spec = PolicySpec(
        ScalingSpec(min_replicas=1, max_replicas=40, target_queue_depth=8),
        CapacitySpec(dedicated_min=1),
        SloSpec(),
    )
    totals = [d.total for d in _fluid_fleet(spec, 100.0, 10.0, 30, 720, False)]
    assert min(totals) < 15  # probed down to where a queue forms
    assert len(set(totals[-180:])) == 1
    assert totals[-1] == math.ceil(100.0 / (10.0 * spec.scaling.target_utilization))


@FAST
@given(
    specs(),
    st.tuples(st.floats(0, 400), st.floats(0, 300), st.floats(0, 40)),
    st.integers(1, 20),
    st.floats(0, 300),
    st.floats(0, 300),
    st.floats(0, 300),
    st.floats(0, 40),
    st.integers(1, 30),
)
def test_desired_replicas_monotone_in_queue_depth(spec, load, periods, running, w1, w2, rate, size):
    """From the same history, a longer queue never asks for fewer replicas."""
    low, high = sorted((w1, w2))
    state, fleet, finished = PolicyState(), pods(size, 0), 0.0
    for i in range(periods):
        finished += load[2] * PERIOD
        state = decide(spec, observe(i * PERIOD, fleet, load[0], load[1], finished), state).state
    now, finished = periods * PERIOD, finished + rate * PERIOD
    a = decide(spec, observe(now, fleet, low, running, finished), state)
    b = decide(spec, observe(now, fleet, high, running, finished), state)
    assert a.total <= b.total


@FAST
@given(
    st.integers(2, 30),  # spot replicas serving before the gap
    st.integers(0, 4),  # dedicated baseline
    st.data(),
)
def test_dedicated_covers_a_spot_gap_within_one_period(spot_count, baseline, data):
    spec = PolicySpec(
        ScalingSpec(min_replicas=1, max_replicas=60, target_queue_depth=8),
        CapacitySpec(dedicated_min=baseline, spot=SpotSpec(enabled=True, max=60)),
        SloSpec(),
    )
    total = baseline + spot_count
    # A steady fleet: `total` replicas each finishing 10 req/s with a short queue.
    state = PolicyState(capacity=10.0 / spec.scaling.target_utilization)
    fleet, finished, now = pods(baseline, spot_count), 0.0, 0.0
    for _ in range(12):
        finished += 10 * PERIOD
        d = decide(spec, observe(now, fleet, 0.0, 40.0, finished), state)
        state, now = d.state, now + PERIOD
        fleet = pods(d.dedicated, d.spot)
    assert d.total == total and d.spot == spot_count
    # Now spot pods go: some get an interruption notice, some are replaced by pods that
    # cannot schedule (right after the interruption, or pending past the timeout).
    gone = data.draw(st.integers(1, spot_count))
    kinds = data.draw(
        st.lists(st.sampled_from(["notice", "replaced", "overdue"]), min_size=gone, max_size=gone)
    )
    spot = [p for p in fleet if p.pool == "spot"]
    kept = [p for p in fleet if p.pool == "dedicated"] + spot[gone:]
    interrupted: list[float] = []
    for i, kind in enumerate(kinds):
        if kind == "notice":
            kept.append(PodState(spot[i].name, "spot", READY, -600.0, notice=True))
        elif kind == "replaced":
            interrupted.append(now - 1.0)
            kept.append(pending(f"r{i}", now - 1.0))
        else:
            kept.append(pending(f"o{i}", now - 1000.0))
    finished += 10 * PERIOD
    d = decide(spec, observe(now, kept, 0.0, 40.0, finished, interruptions=interrupted), state)
    serving_spot = sum(1 for p in kept if p.pool == "spot" and p.phase == READY and not p.notice)
    assert d.dedicated + serving_spot >= d.total
    assert d.spot_gap == gone
    assert d.reason == "SpotGapCovered"
    assert math.isfinite(d.total)
