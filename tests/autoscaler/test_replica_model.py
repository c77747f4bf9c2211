"""The simulated replica: its service model's numbers, and its bookkeeping under overload
(KV preemption, clients giving up) against the requests that went in."""

from __future__ import annotations

import random

import pytest

from infleet.autoscaler.simulator.arrivals import TokenShape
from infleet.autoscaler.simulator.cohort import Cohort
from infleet.autoscaler.simulator.randoms import poisson_many
from infleet.autoscaler.simulator.recorder import LatencyRecorder
from infleet.autoscaler.simulator.replica import SimReplica
from infleet.autoscaler.simulator.service_model import ReplicaModel


def test_default_model_is_shaped_like_an_h100_serving_an_8b_model():
    m = ReplicaModel()
    assert 100 < m.decode_tok_s(1, 1024) < 160  # ~8 ms per token, one sequence
    assert 8_000 < m.decode_tok_s(256, 1152) < 14_000  # a full batch
    assert 25_000 < m.prefill_tok_s() < 40_000
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        ReplicaModel(max_num_batched_tokens=128)


def drive(replica: SimReplica, rate: float, ticks: int, seed: int = 0, dt: float = 2.0):
    rec, rng, shape, sent = LatencyRecorder(1.0), random.Random(seed), TokenShape(), 0
    for i in range(ticks):
        t = i * dt
        n = poisson_many(rate * dt, 1, rng)[0]
        if n:
            prompt, output = shape.sums(n, rng)
            replica.enqueue(Cohort(t, dt / n, t, dt / n, n, prompt / n, output / n))
            sent += n
        replica.tick(t, dt, rec)
        live = sum(c.n for c in replica.order if not c.dead)
        in_heap = sum(c.n for _, _, c in replica.heap if not c.dead)
        assert replica.run_n == live == in_heap, f"tick {i}"
        assert replica.waiting == sum(c.n for c in replica.queue), f"tick {i}"
    return rec, sent


def test_under_capacity_every_request_finishes_fast():
    replica = SimReplica(ReplicaModel())
    rec, sent = drive(replica, 10.0, 900)
    assert rec.failures == 0 and replica.preemptions == 0
    assert rec.ttft.total + replica.run_n + replica.waiting == sent
    assert rec.attained / rec.ttft.total == 1.0 and rec.ttft.quantile(0.95) < 0.2


def test_overload_preempts_for_kv_and_clients_give_up_and_nothing_is_lost():
    replica = SimReplica(ReplicaModel(kv_capacity_tokens=60_000), timeout_s=60.0)
    rec, sent = drive(replica, 40.0, 1500)
    assert replica.preemptions > 0 and rec.failures > 0
    # Every request sent finished, gave up, or is still in the replica.
    assert round(rec.ttft.total) + rec.failures + replica.run_n + replica.waiting == sent
    assert replica.kv_usage() <= 1.0
