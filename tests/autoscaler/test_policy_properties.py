"""Properties of `decide` that must hold for any spec and any load (hypothesis), on fleets
whose true capacity per replica varies over time and with the request shape."""

from __future__ import annotations

import dataclasses
import itertools
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infleet.autoscaler.adapter import spec_from
from infleet.autoscaler.policy import PolicyState, decide
from infleet.autoscaler.state import restore, snapshot
from infleet.autoscaler.view import READY, Observation, PodState, ReplicaMetrics
from tests.autoscaler.fleet_obs import (
    PERIOD,
    FluidFleet,
    loading,
    observe,
    pending,
    pods,
    run,
    with_prior,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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


def _capacity(base: float, swing: float, period_s: float):
    """A replica's true requests/s: `base`, swinging by `swing` over `period_s` (another
    tenant on the GPU, thermal limits, a different model revision)."""
    return lambda t, shape: base * (1.0 + swing * math.sin(2 * math.pi * t / period_s))


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
    """Constant load, a prior that knows the replica: the total settles and stays. Starting
    far too small it may overshoot twice (a panic for the burst it sees, extra replicas to
    drain the queue the start left), never oscillate."""
    spec = with_prior(spec, capacity, tuning=None)
    fluid = FluidFleet(spec, lambda t: arrivals, lambda t, s: capacity, size)
    totals = [d.total for d in run(spec, fluid, 180)]
    moves = [b - a for a, b in itertools.pairwise(totals) if b != a]
    reversals = sum(1 for a, b in itertools.pairwise(moves) if (a > 0) != (b > 0))
    assert reversals <= 2, totals
    assert len(set(totals[-90:])) == 1, totals


@SLOW
@given(st.floats(2.5, 4.0), st.floats(2, 8), st.floats(4, 20), st.floats(0.0, 0.2))
def test_an_optimistic_prior_is_learned_down_until_the_fleet_no_longer_queues(
    wrong, load, capacity, swing
):
    """The prior says a replica serves `wrong` times what it does (and the truth swings
    over the hour); the fleet starts with one replica, which queues: the queues teach the
    policy, and the fleet ends unsaturated with its learned capacity near the truth, not
    the prior. (A fleet that never queues teaches nothing: docs/autoscaling.md#capacity.)"""
    spec = spec_from({"minReplicas": 1, "maxReplicas": 200}, {"dedicated": {"min": 1}})
    arrivals = load * capacity * 1.5  # over what one replica serves, even at its best
    guess = with_prior(spec, capacity * wrong)
    truth = _capacity(capacity, swing, 3600.0)
    fluid = FluidFleet(guess, lambda t: arrivals, truth, 1)
    queues = []
    for d in run(guess, fluid, 240):
        queues.append(fluid.waiting / max(d.load.serving, 1))
    # The last half hour: queues stay short (the truth keeps moving, so a few requests
    # wait while the policy relearns), and what is learned is near the truth.
    assert sum(queues[-180:]) / 180 < guess.scaling.target_queue_depth, d.message()
    assert d.load.capacity <= 1.6 * capacity * (1 + swing)


@FAST
@given(
    st.floats(30, 300),  # req/s
    st.floats(0.0, 0.4),  # how much a replica's capacity swings
    st.integers(30, 180),  # when the blackout starts (periods)
    st.integers(6, 180),  # how long it lasts (periods)
    st.floats(0.3, 3.0),  # the load during the blackout, relative
)
def test_a_blackout_never_lowers_desired_replicas(rate, swing, start, length, during):
    spec = with_prior(
        spec_from({"minReplicas": 1, "maxReplicas": 80}, {"dedicated": {"min": 1}}), 12.0, None
    )

    def arrivals(t: float) -> float:
        return rate * (during if start * PERIOD <= t < (start + length) * PERIOD else 1.0)

    fluid = FluidFleet(spec, arrivals, _capacity(12.0, swing, 1800.0), 10)
    blind = lambda t: start * PERIOD <= t < (start + length) * PERIOD  # noqa: E731
    before = None
    for d in run(spec, fluid, start + length, blind=blind):
        if d.load.blind:
            before = before if before is not None else d.total
            assert d.total >= before and d.reason == "MetricsUnavailable"
        else:
            before = d.total


@FAST
@given(st.floats(20, 120), st.floats(0.3, 0.8), st.integers(60, 360), st.floats(0.0, 0.2))
def test_after_a_prompt_shift_and_back_the_fleet_returns_to_what_a_fresh_policy_runs(
    rate, long_prompt_factor, shift_periods, swing
):
    """1k-token prompts, then 8k for a while (where the prior is off: the replica serves
    `long_prompt_factor` of what the prior says), then 1k again: within 30 minutes of the
    return the fleet is within 10% (or one replica) of what a fresh policy chooses."""
    spec = spec_from({"minReplicas": 1, "maxReplicas": 200}, {"dedicated": {"min": 1}})
    base = _capacity(12.0, swing, 3600.0)

    def capacity(t: float, shape: tuple[float, float]) -> float:
        prior = spec.tuning.prior
        ratio = prior.requests_per_s(*shape) / prior.requests_per_s(1024.0, 256.0)
        return base(t, shape) * ratio * (long_prompt_factor if shape[0] > 4096 else 1.0)

    shifted = (60 * PERIOD, (60 + shift_periods) * PERIOD)

    def shape(t: float) -> tuple[float, float]:
        return (8192.0, 256.0) if shifted[0] <= t < shifted[1] else (1024.0, 256.0)

    spec = with_prior(spec, 12.0, tuning=None)
    periods = 60 + shift_periods + 180
    fluid = FluidFleet(spec, lambda t: rate, capacity, 5, shape)
    totals = [d.total for d in run(spec, fluid, periods)]
    end = periods * PERIOD
    fresh_fleet = FluidFleet(spec, lambda t: rate, capacity, totals[-1], shape)
    fresh = list(run(spec, fresh_fleet, 60, t0=end))[-1].total
    assert abs(totals[-1] - fresh) <= max(1, 0.1 * fresh), (totals[-1], fresh)


@FAST
@given(
    st.integers(1, 20),  # ready
    st.integers(0, 20),  # loading
    st.integers(0, 5),  # pending
    st.floats(0, 300),  # req/s
    st.booleans(),  # restored from a snapshot (else: cold, no memory)
)
def test_a_restart_with_loading_pods_never_scales_below_the_previous_desired(
    ready, starting, waiting_pods, rate, restored
):
    spec = with_prior(
        spec_from({"minReplicas": 1, "maxReplicas": 60}, {"dedicated": {"min": 1}}), 12.0, None
    )
    fluid = FluidFleet(spec, lambda t: rate, lambda t, s: 12.0, ready)
    last = list(run(spec, fluid, 40))[-1]  # the memory a snapshot would have kept
    previous = ready + starting + waiting_pods
    fleet = [
        *pods(ready, 0),
        *loading(starting),
        *(pending(f"p{i}", 380.0) for i in range(waiting_pods)),
    ]
    state = PolicyState()
    if restored:
        state = restore(snapshot(dataclasses.replace(last.state, total=previous)))
    window = spec.scaling.scale_down_stabilization_window_seconds
    for i in range(int(window // PERIOD)):
        now = 400.0 + i * PERIOD
        obs = observe(now, fleet, 0.0, rate * 5.0 / max(ready, 1), rate * now / max(ready, 1))
        d = decide(spec, obs, state)
        state = d.state
        assert d.total >= min(previous, spec.scaling.max_replicas), (i, d.message())


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
