"""Capacity learning: keyed by request shape, both ways, bounded, relaxing to the prior."""

from __future__ import annotations

import dataclasses

import pytest

from infleet.autoscaler.capacity import CapacityModel, capacity, learn, shape_key, steady_shape
from infleet.autoscaler.signals import Interval
from infleet.autoscaler.spec import Tuning

SHORT, LONG = (1024.0, 256.0), (8192.0, 256.0)
TUNING = Tuning()


def interval(full: list[float] = (), served: float | None = None, shape=SHORT) -> Interval:
    i = Interval(0.0, 4, 4, 0, 0.0, 0.0, 0.3)
    i.full_rates, i.served_rate = list(full), served
    i.finished, i.prompt_tokens, i.output_tokens = 100.0, 100.0 * shape[0], 100.0 * shape[1]
    return i


def teach(model: CapacityModel, rate: float, shape=SHORT, times: int = 40, t0: float = 0.0):
    for k in range(times):
        model = learn(model, TUNING, shape, interval([rate] * 4, shape=shape), t0 + 10.0 * k)
    return model


def test_the_prior_prices_a_request_by_its_tokens():
    prior = TUNING.prior
    assert prior.requests_per_s(*SHORT) == pytest.approx(1 / (1024 / 30_000 + 256 / 11_000))
    assert capacity(CapacityModel(), TUNING, SHORT, 0.0) == prior.requests_per_s(*SHORT)
    assert (
        capacity(CapacityModel(), TUNING, LONG, 0.0)
        < capacity(CapacityModel(), TUNING, SHORT, 0.0) / 4
    )


def test_full_replicas_teach_their_shapes_bucket_and_leave_the_others():
    model = teach(CapacityModel(), 1.3, LONG)
    assert capacity(model, TUNING, LONG, 400.0) == pytest.approx(1.3, rel=0.05)
    # 1k prompts, never measured: the prior, nearly untouched by the 8k bucket (1/64).
    short = capacity(model, TUNING, SHORT, 400.0) / TUNING.prior.requests_per_s(*SHORT)
    assert 0.95 < short < 1.0
    assert shape_key(SHORT) != shape_key(LONG) and shape_key((1100.0, 250.0)) == shape_key(SHORT)


def test_learning_goes_both_ways():
    low = teach(CapacityModel(), 5.0)
    assert capacity(low, TUNING, SHORT, 400.0) == pytest.approx(5.0, rel=0.05)
    # Replicas without a queue that finish more than the estimate prove it low.
    up = learn(low, TUNING, SHORT, interval(served=7.0), 410.0)
    assert capacity(up, TUNING, SHORT, 410.0) == pytest.approx(7.0, rel=0.01)
    # ... but one that finishes less than the estimate teaches nothing.
    assert learn(up, TUNING, SHORT, interval(served=3.0), 420.0) == up


def test_each_step_and_the_whole_estimate_are_bounded():
    prior = TUNING.prior.requests_per_s(*SHORT)
    once = learn(CapacityModel(), TUNING, SHORT, interval([prior / 100] * 4), 0.0)
    assert capacity(once, TUNING, SHORT, 0.0) == pytest.approx(prior / TUNING.capacity_step)
    floor = teach(CapacityModel(), prior / 1000, times=200)
    assert capacity(floor, TUNING, SHORT, 2000.0) == pytest.approx(
        prior / TUNING.capacity_bound, rel=1e-3
    )


def test_without_evidence_an_estimate_relaxes_toward_the_prior():
    model = teach(CapacityModel(), 5.0)
    prior = TUNING.prior.requests_per_s(*SHORT)
    half = capacity(model, TUNING, SHORT, 400.0 + TUNING.capacity_half_life_s)
    assert half == pytest.approx((5.0 * prior) ** 0.5, rel=0.05)  # halfway, in log space
    assert capacity(
        model, TUNING, SHORT, 400.0 + 20 * TUNING.capacity_half_life_s
    ) == pytest.approx(prior, rel=0.01)


def test_nothing_is_learned_while_the_shape_shifts():
    shifting = interval([1.0] * 4, shape=LONG)
    assert not steady_shape(shifting, SHORT) and steady_shape(shifting, LONG)
    no_tokens = dataclasses.replace(shifting, prompt_tokens=None)
    assert steady_shape(no_tokens, SHORT)  # engines without token counters: one shape
