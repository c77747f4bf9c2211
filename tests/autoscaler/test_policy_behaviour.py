"""Named behaviours of `decide`: saturation signals, scale to zero and back, the burn-rate
shift toward dedicated, make before break, blind fleets, unknown replicas, bursts, cold
starts, and the reasons a human reads."""

from __future__ import annotations

from infleet.autoscaler.adapter import spec_from
from infleet.autoscaler.policy import PolicyState, decide
from infleet.autoscaler.view import Observation, ReplicaMetrics
from tests.autoscaler.fleet_obs import PERIOD, FluidFleet, loading, observe, pods, run, with_prior


def spec(prior_rps: float = 10.0, **scaling):
    return with_prior(
        spec_from(
            {"minReplicas": 1, "maxReplicas": 40, **scaling},
            {"dedicated": {"min": 1}, "spot": {"enabled": True, "max": 40}},
            {"spotPreemptionsPerReplicaHour": 0.2, "requestPreemptionRatio": 0.01},
        ),
        prior_rps,
    )


def last(policy, observations, state=None):
    state, d = state or PolicyState(), None
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
    d = last(spec(), obs)
    assert d.reason == "KVCacheSaturated" and d.total >= 5  # 4 x 0.95 / 0.85
    assert "KV cache 95% full" in d.message()


def test_request_preemptions_over_budget_add_capacity():
    fleet = pods(4, 0)
    obs = [
        Observation(i * PERIOD, metrics(4, preempted=2.0 * i, finished=10.0 * i), fleet)
        for i in range(8)
    ]
    d = last(spec(), obs)
    assert d.reason == "RequestPreemptionsOverBudget" and d.total == 5
    assert "engines preempt 0.200 per request (budget 0.01)" in d.message()


def test_scale_to_zero_needs_an_activator_and_comes_back_when_requests_wait():
    zero = spec(minReplicas=0, scaleToZero={"enabled": True, "idleSeconds": 60})
    fleet = pods(1, 0)
    idle = [observe(i * PERIOD, fleet, 0.0, 0.0, 5.0, activator=None) for i in range(40)]
    kept = last(zero, idle)
    assert kept.total == 1 and "no activator" in kept.message()
    d = last(zero, [observe(i * PERIOD, fleet, 0.0, 0.0, 5.0, activator=0.0) for i in range(40)])
    assert d.total == 0 and d.reason == "ScaledToZero" and (d.dedicated, d.spot) == (0, 0)
    woken = decide(zero, Observation(400.0, [], [], [], activator_waiting=3.0), d.state)
    assert woken.total >= 1 and woken.reason == "ActivatedFromZero"


def test_spot_interruptions_over_budget_move_the_fleet_to_dedicated_and_back():
    policy = spec(minReplicas=10)
    state, fleet, now, finished = PolicyState(), pods(1, 9), 0.0, 0.0

    def tick(interruptions=()):
        nonlocal state, fleet, now, finished
        finished += 5 * PERIOD
        obs = observe(now, fleet, 0.0, 20.0, finished, interruptions=list(interruptions))
        d = decide(policy, obs, state)
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
    policy = spec(minReplicas=6)
    d = decide(policy, observe(0.0, pods(6, 0), 0.0, 20.0, 0.0), PolicyState())
    assert d.spot == 5 and d.dedicated == 6  # asks for spot, keeps every dedicated one
    assert "keeping 5 dedicated until spot replicas pass readiness" in d.message()
    d = decide(policy, observe(10.0, pods(6, 3), 0.0, 20.0, 50.0), d.state)
    assert d.dedicated == 3  # three spot replicas ready: three dedicated can go


def test_a_blind_fleet_holds_and_grows_only_on_the_services_ttft():
    policy = spec()
    fluid = FluidFleet(policy, lambda t: 80.0, lambda t, s: 10.0, 12)
    d = list(run(policy, fluid, 60))[-1]
    held = d.total
    blind = [Observation(600.0 + i * PERIOD, [], fluid.fleet, [], 0.0) for i in range(40)]
    d = last(policy, blind, d.state)
    assert d.total == held and d.reason == "MetricsUnavailable"
    assert "no replica has reported metrics for 400s" in d.message()
    assert d.load.blind and d.load.blind_s == 400.0
    slow = Observation(1000.0, [], fluid.fleet, [], 0.0, ttft_p95_s=3.0)
    d = decide(policy, slow, d.state)
    assert d.total == held + max(1, -(-held // 4)) and "TTFT p95 3.00s" in d.message()


def test_replicas_without_metrics_are_held_only_the_known_part_shrinks():
    policy = spec()
    fluid = FluidFleet(policy, lambda t: 40.0, lambda t, s: 10.0, 20)
    d = list(run(policy, fluid, 3))[-1]
    state = d.state
    for i in range(3, 60):  # 5 of the 20 replicas never report; the load needs ~6
        obs = fluid.observation(i * PERIOD)
        obs.replicas = [r for r in obs.replicas if r.pod not in {"d0", "d1", "d2", "d3", "d4"}]
        d = decide(policy, obs, state)
        state = d.state
    assert d.load.unknown == 5 and "5 replicas not reporting: kept" in d.message()
    assert d.total >= 5 + 5  # the known part shrank to what it needs; the unknown stayed


def test_a_cold_start_keeps_loading_pods():
    """An operator restart with 4 of 10 replicas still loading: nothing is scaled away
    within the scale-down window (a ReplicaSet would delete the loading ones first)."""
    policy = spec()
    fleet = pods(6, 0) + loading(4)
    state = PolicyState()
    for i in range(30):
        d = decide(policy, observe(i * PERIOD, fleet, 0.0, 0.0, 0.0), state)
        state = d.state
        assert d.total == 10
    # Every pod still loading, nothing served yet: the cold-start floor alone holds them.
    d = last(policy, [observe(i * PERIOD, loading(10), 0.0, 0.0, 0.0) for i in range(29)])
    assert d.total == 10 and "started cold with 10 replicas" in d.message()


def test_a_burst_panics_past_the_rate_limits_and_sizes_for_the_projected_load():
    policy = spec(prior_rps=10.0, maxReplicas=60)

    def rate(t: float) -> float:
        return 30.0 if t < 600 else 300.0

    fluid = FluidFleet(policy, rate, lambda t, s: 10.0, 5)
    decisions = list(run(policy, fluid, 62))
    first = next(d for d in decisions if "burst:" in d.message())
    assert first.load.serving == 5 and first.reason in ("PanicBurst", "AtMaxReplicas")
    # Past the per-minute limit (2x or +4), to the size the burst needs, in one decision.
    assert first.total >= 300.0 / (10.0 * policy.tuning.target_utilization)
