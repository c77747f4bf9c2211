"""Named behaviours of `decide`: saturation signals, scale to zero and back, the burn-rate
shift toward dedicated, make before break, and the reasons a human reads."""

from __future__ import annotations

from infleet.autoscaler.policy import PolicyState, decide
from infleet.autoscaler.spec import CapacitySpec, PolicySpec, ScalingSpec, SloSpec, SpotSpec
from infleet.autoscaler.view import Observation, ReplicaMetrics
from tests.autoscaler.fleet_obs import observe, pods

PERIOD = 10.0


def spec(**scaling) -> PolicySpec:
    return PolicySpec(
        ScalingSpec(**{"min_replicas": 1, "max_replicas": 40, **scaling}),
        CapacitySpec(dedicated_min=1, spot=SpotSpec(enabled=True, max=40)),
        SloSpec(spot_preemptions_per_replica_hour=0.2, request_preemption_ratio=0.01),
    )


def run(policy, observations):
    state, d = PolicyState(), None
    for obs in observations:
        d = decide(policy, obs, state)
        state = d.state
    return d


def metrics(n: int, kv: float = 0.3, preempted: float = 0.0, finished: float = 0.0):
    return [
        ReplicaMetrics(f"d{i}", "dedicated", 0.0, 20.0, kv, preempted, finished) for i in range(n)
    ]


def test_a_full_kv_cache_adds_replicas():
    fleet = pods(4, 0)
    obs = [Observation(i * PERIOD, metrics(4, kv=0.95, finished=10.0 * i), fleet) for i in range(8)]
    d = run(spec(), obs)
    assert d.reason == "KVCacheSaturated" and d.total >= 5  # 4 x 0.95 / 0.85
    assert "KV cache 95% full" in d.message()


def test_request_preemptions_over_budget_add_capacity():
    fleet = pods(4, 0)
    obs = [
        Observation(i * PERIOD, metrics(4, preempted=2.0 * i, finished=10.0 * i), fleet)
        for i in range(8)
    ]
    d = run(spec(), obs)
    assert d.reason == "RequestPreemptionsOverBudget" and d.total == 5
    assert "engines preempt 0.200 per request (budget 0.01)" in d.message()


def test_scale_to_zero_needs_an_activator_and_comes_back_when_requests_wait():
    zero = spec(min_replicas=0, scale_to_zero=True, scale_to_zero_idle_s=60.0)
    fleet = pods(1, 0)
    idle = [observe(i * PERIOD, fleet, 0.0, 0.0, 5.0, activator=None) for i in range(40)]
    kept = run(zero, idle)
    assert kept.total == 1 and "no activator" in kept.message()
    state = PolicyState()
    for i in range(40):
        d = decide(zero, observe(i * PERIOD, fleet, 0.0, 0.0, 5.0, activator=0.0), state)
        state = d.state
    assert d.total == 0 and d.reason == "ScaledToZero" and (d.dedicated, d.spot) == (0, 0)
    woken = decide(zero, Observation(400.0, [], [], [], activator_waiting=3.0), state)
    assert woken.total >= 1 and woken.reason == "ActivatedFromZero"


def test_spot_interruptions_over_budget_move_the_fleet_to_dedicated_and_back():
    policy = spec(min_replicas=10)
    state, fleet, now, finished = PolicyState(capacity=10.0), pods(1, 9), 0.0, 0.0

    def tick(interruptions=()):
        nonlocal state, fleet, now, finished
        finished += 5 * PERIOD
        d = decide(
            policy,
            observe(now, fleet, 0.0, 20.0, finished, interruptions=list(interruptions)),
            state,
        )
        state, now, fleet = d.state, now + PERIOD, pods(d.dedicated, d.spot)
        return d

    for _ in range(360):  # an hour on spot, quiet
        d = tick()
    assert (d.dedicated, d.spot) == (1, 9)
    for _ in range(6):  # a storm: 4 interruptions a minute on 9 spot replicas
        for _ in range(6):
            d = tick([now - 1.0] if _ % 2 == 0 else [])
    assert d.reason == "SpotInterruptionBudgetBurning"
    assert d.dedicated > 1 and "burn" in d.message()
    for _ in range(30):
        d = tick()
    assert d.dedicated == 10 and d.spot == 0  # all dedicated, spot handed back once ready
    for _ in range(6 * 360 + 200):  # six quiet hours: back to the baseline
        d = tick()
    assert (d.dedicated, d.spot) == (1, 9)


def test_moving_to_spot_keeps_dedicated_until_spot_is_ready():
    policy = spec(min_replicas=6)
    state = PolicyState(capacity=10.0)
    d = decide(policy, observe(0.0, pods(6, 0), 0.0, 20.0, 0.0), state)
    assert d.spot == 5 and d.dedicated == 6  # asks for spot, keeps every dedicated one
    assert "keeping 5 dedicated until spot replicas pass readiness" in d.message()
    d = decide(policy, observe(10.0, pods(6, 3), 0.0, 20.0, 50.0), d.state)
    assert d.dedicated == 3  # three spot replicas ready: three dedicated can go
