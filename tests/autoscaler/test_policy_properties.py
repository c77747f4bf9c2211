"""Properties of `decide` that must hold for any spec and any load (hypothesis): bounds,
no flapping, monotone in the queue, spot gaps covered at once."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from infleet.autoscaler.adapter import spec_from
from infleet.autoscaler.policy import PolicyState, decide
from infleet.autoscaler.view import READY, Observation, PodState, ReplicaMetrics
from tests.autoscaler.fleet_obs import (
    FAST,
    PERIOD,
    FluidFleet,
    observe,
    pending,
    pods,
    run,
    with_prior,
)


@st.composite
def specs(draw):
    zero = draw(st.booleans())
    lo = 0 if zero else draw(st.integers(1, 6))
    hi = draw(st.integers(max(lo, 1), 40))
    spot_on = draw(st.booleans())
    return spec_from(
        {
            "minReplicas": lo,
            "maxReplicas": hi,
            "targetQueueDepth": draw(st.integers(1, 32)),
            "scaleToZero": {"enabled": zero, "idleSeconds": draw(st.sampled_from([30, 600]))},
            "scaleUpStabilizationWindowSeconds": draw(st.sampled_from([0, 30])),
            "scaleDownStabilizationWindowSeconds": draw(st.sampled_from([0, 300])),
        },
        {
            "dedicated": {"min": draw(st.integers(0 if spot_on or zero else 1, hi))},
            "spot": {"enabled": spot_on, "max": draw(st.integers(0, hi)) if spot_on else None},
        },
        {"spotPreemptionsPerReplicaHour": draw(st.sampled_from([0.0, 0.2, 5.0]))},
    )


loads = st.lists(
    st.tuples(st.floats(0, 4000), st.floats(0, 3000), st.floats(0, 400)), min_size=1, max_size=40
)


@FAST
@given(specs(), loads, st.integers(0, 40))
def test_never_below_min_or_above_max(spec, load, start):
    s, state, fleet, counters = spec.scaling, PolicyState(), pods(start, 0), {}
    for i, (waiting, running, rate) in enumerate(load):
        ready = [p for p in fleet if p.phase == READY]
        n = max(len(ready), 1)
        for p in ready:
            counters[p.name] = counters.get(p.name, 0.0) + rate * PERIOD / n
        replicas = [
            ReplicaMetrics(p.name, p.pool, waiting / n, running / n, 0.3, 0.0, counters[p.name])
            for p in ready
        ]
        d = decide(spec, Observation(i * PERIOD, replicas, fleet, [], 0.0), state)
        state = d.state
        floor = 0 if s.scale_to_zero.enabled else s.min_replicas
        assert floor <= d.total <= s.max_replicas
        assert d.spot <= spec.spot_max and d.dedicated >= 0 and d.spot >= 0
        serving_spot = sum(1 for p in fleet if p.pool == "spot" and p.phase == READY)
        # Dedicated beyond the total only covers spot that cannot serve.
        assert d.dedicated + min(serving_spot, d.spot) <= max(d.total, d.dedicated)
        assert d.dedicated <= d.total + serving_spot
        fleet = pods(d.dedicated, d.spot)


@FAST
@given(specs(), st.floats(0.5, 400), st.floats(0.5, 30), st.integers(1, 30))
def test_no_flapping_under_constant_load(spec, arrivals, capacity, size):
    """Constant load, a prior that knows the replica: the total settles and stays. The
    first five minutes may move it a few times (a fleet started far too small drains the
    backlog it built, and a panic answers the burst it sees); after that it may overshoot
    once more, never oscillate."""
    spec = with_prior(spec, capacity, tuning=None)
    fluid = FluidFleet(spec, lambda t: arrivals, lambda t, s: capacity, size)
    totals = [d.total for d in run(spec, fluid, 180)]
    moves = [b - a for a, b in itertools.pairwise(totals[30:]) if b != a]
    reversals = sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))
    assert reversals <= 1, totals
    assert len(set(totals[-90:])) == 1, totals


@FAST
@given(specs(), st.tuples(st.floats(0, 400), st.floats(0, 300)), st.integers(1, 20),
       st.floats(0, 300), st.floats(0, 300), st.floats(0, 300), st.floats(0, 40), st.integers(1, 30))  # fmt: skip
def test_desired_replicas_monotone_in_queue_depth(spec, load, periods, running, w1, w2, rate, size):
    """From the same history, a longer queue never asks for fewer replicas."""
    low, high = sorted((w1, w2))
    state, fleet, finished = PolicyState(), pods(size, 0), 0.0
    for i in range(periods):
        finished += rate * PERIOD
        state = decide(spec, observe(i * PERIOD, fleet, load[0], load[1], finished), state).state
    now, finished = periods * PERIOD, finished + rate * PERIOD
    a = decide(spec, observe(now, fleet, low, running, finished), state)
    b = decide(spec, observe(now, fleet, high, running, finished), state)
    assert a.total <= b.total


@FAST
@given(st.integers(2, 30), st.integers(0, 4), st.data())
def test_dedicated_covers_a_spot_gap_within_one_period(spot_count, baseline, data):
    spec = with_prior(
        spec_from(
            {"minReplicas": 1, "maxReplicas": 60},
            {"dedicated": {"min": baseline}, "spot": {"enabled": True, "max": 60}},
            {"spotPreemptionsPerReplicaHour": 100.0},  # gaps only: no shift off spot
        ),
        10.0 / 0.7,
    )
    total = baseline + spot_count
    # A steady fleet: `total` replicas each finishing 10 req/s with a short queue.
    state, fleet, finished, now = PolicyState(), pods(baseline, spot_count), 0.0, 0.0
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
