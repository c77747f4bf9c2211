"""The baselines do what their autoscalers document (on made-up fleets)."""

from __future__ import annotations

from infleet.autoscaler.simulator.policies import HpaPolicy, KedaPolicy, KpaPolicy
from infleet.autoscaler.view import Observation, ReplicaMetrics
from tests.autoscaler.fleet_obs import pods


def fleet(n: int, waiting: float, running: float, now: float = 0.0, reporting: int | None = None):
    ready = pods(n, 0)
    replicas = [ReplicaMetrics(p.name, p.pool, waiting, running) for p in ready[: reporting or n]]
    return Observation(now, replicas, ready)


def concurrency(obs, util):
    return [r.running + r.waiting for r in obs.replicas]


def test_hpa_scales_on_the_average_within_tolerance_and_limits():
    hpa = HpaPolicy(concurrency, 10.0, 1, 100)
    assert hpa.decide(fleet(4, 0.0, 10.5), 0.0) == (4, 0)  # 5% over: within tolerance
    assert hpa.decide(fleet(4, 10.0, 20.0, 15.0), 0.0) == (8, 0)  # 3x wanted, 100% per period
    hpa = HpaPolicy(concurrency, 10.0, 1, 100)
    hpa.decide(fleet(10, 0.0, 10.0), 0.0)
    assert hpa.decide(fleet(10, 0.0, 2.0, 15.0), 0.0) == (10, 0)  # 300 s stabilization
    assert hpa.decide(fleet(10, 0.0, 2.0, 320.0), 0.0) == (2, 0)


def test_hpa_counts_pods_without_metrics_against_the_move():
    hpa = HpaPolicy(concurrency, 10.0, 1, 100)
    # 4 of 10 report 20 each: scaling up, the 6 silent ones count as 0: 80/10/10 = 0.8.
    assert hpa.decide(fleet(10, 0.0, 20.0, reporting=4), 0.0) == (10, 0)


def test_keda_asks_for_queue_over_threshold_and_deactivates_at_zero_only():
    keda = KedaPolicy(threshold=4.0, activation=0.0, cooldown_s=300.0, lo=1, hi=100)
    # 40 waiting / 4 = 10 wanted; the HPA's limit: max(+100%, +4 pods) per period.
    assert keda.decide(fleet(2, 20.0, 5.0), 0.0) == (6, 0)
    zero = KedaPolicy(threshold=4.0, activation=0.0, cooldown_s=300.0, lo=0, hi=100)
    zero.decide(fleet(2, 0.0, 3.0), 0.0)
    assert zero.decide(fleet(2, 0.0, 3.0, 310.0), 0.0) == (0, 0)  # idle past the cooldown


def test_kpa_panics_at_twice_the_ready_and_never_shrinks_in_panic():
    kpa = KpaPolicy(target=10.0, lo=1, hi=100)
    for t in range(0, 60, 2):
        kpa.decide(fleet(4, 0.0, 7.0, float(t)), 0.0)  # 28 in flight: 28 / 7 = 4 pods
    assert kpa.decide(fleet(4, 0.0, 7.0, 60.0), 0.0) == (4, 0)
    burst = kpa.decide(fleet(4, 30.0, 7.0, 62.0), 0.0)  # the 6 s window sees 148 in flight
    assert burst[0] >= 8 and kpa.panic_since == 62.0
    calm = kpa.decide(fleet(burst[0], 0.0, 1.0, 64.0), 0.0)
    assert calm[0] >= burst[0]  # in panic: no scale-down
