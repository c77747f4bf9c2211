"""What one full replica serves, in requests per second, for the request shape of now.

The prior (`Tuning.prior`: prefill and decode token rates of this model on this GPU)
prices a request of P prompt and O output tokens at P/prefill + O/decode seconds of a
replica, so a shift in prompt length moves the capacity at once. What is learned is a
factor on that prior, kept per request shape (half-octave buckets of the mean prompt and
output lengths), so an hour of 8k-token prompts teaches the 8k bucket and leaves the 1k
bucket as it was:

- a replica that ends an interval with a queue serves flat out: its finish rate is the
  capacity (the factor moves toward it, smoothed);
- a replica without a queue that finishes more than the estimate proves the estimate
  low: the factor rises to what it served;
- without evidence a factor relaxes toward the prior (half-life
  `Tuning.capacity_half_life_s`), never moves more than `capacity_step` per decision,
  and stays within prior / `capacity_bound` .. prior x `capacity_bound`.

A bucket never seen borrows from the nearest bucket learned, less the further it is (the
GPU is the same, but the prior's error changes with the shape): half the factor (in log
space) per half-octave away, so a factor learned at 8k-token prompts carries 1/64 of its
weight to 1k ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from infleet.autoscaler.signals import Interval
from infleet.autoscaler.spec import Tuning

Shape = tuple[float, float]  # mean prompt tokens, mean output tokens
Entry = tuple[float, float]  # factor on the prior, time of its last evidence
MAX_BUCKETS = 16
SMOOTHING = 0.3  # weight of one interval's measurement of a full replica (in log space)


@dataclass(slots=True)
class CapacityModel:
    factors: dict[str, Entry] = field(default_factory=dict)  # shape bucket -> entry

    def copy(self) -> CapacityModel:
        return CapacityModel(dict(self.factors))


def _bucket(shape: Shape) -> tuple[int, int]:
    """Half-octave buckets of the mean prompt and output lengths."""
    return round(2 * math.log2(max(shape[0], 1.0))), round(2 * math.log2(max(shape[1], 1.0)))


def shape_key(shape: Shape) -> str:
    prompt, output = _bucket(shape)
    return f"{prompt}/{output}"


def _distance(key: str, bucket: tuple[int, int]) -> int:
    i, j = (int(x) for x in key.split("/"))
    return abs(i - bucket[0]) + abs(j - bucket[1])


def _decayed(entry: Entry, now: float, half_life_s: float) -> float:
    factor, since = entry
    return math.exp(math.log(factor) * 0.5 ** (max(0.0, now - since) / half_life_s))


def factor(model: CapacityModel, tuning: Tuning, shape: Shape, now: float) -> float:
    if not model.factors:
        return 1.0
    bucket = _bucket(shape)
    key = min(model.factors, key=lambda k: (_distance(k, bucket), -model.factors[k][1]))
    learned = _decayed(model.factors[key], now, tuning.capacity_half_life_s)
    return learned ** (0.5 ** _distance(key, bucket))


def capacity(model: CapacityModel, tuning: Tuning, shape: Shape, now: float) -> float:
    """Requests per second one full replica serves for this shape."""
    return tuning.prior.requests_per_s(*shape) * factor(model, tuning, shape, now)


def steady_shape(interval: Interval, window: Shape) -> bool:
    """Whether the requests of this interval have the shape of the window's: while the
    shape shifts, what full replicas serve belongs to neither, so nothing is learned
    (intervals without token counters are taken as steady)."""
    done, prompt, output = interval.finished, interval.prompt_tokens, interval.output_tokens
    if not done or prompt is None or output is None:
        return True
    return shape_key((prompt / done, output / done)) == shape_key(window)


def learn(
    model: CapacityModel, tuning: Tuning, shape: Shape, interval: Interval, now: float
) -> CapacityModel:
    """The model after this interval's evidence (the same model when there is none)."""
    prior = tuning.prior.requests_per_s(*shape)
    current = factor(model, tuning, shape, now)
    if interval.full_rates:
        seen = sum(interval.full_rates) / len(interval.full_rates) / prior
        new = current * (seen / current) ** SMOOTHING
    elif interval.served_rate is not None and interval.served_rate / prior > current:
        new = interval.served_rate / prior
    else:
        return model
    step, bound = tuning.capacity_step, tuning.capacity_bound
    new = min(max(new, current / step), current * step)
    new = min(max(new, 1.0 / bound), bound)
    factors = {**model.factors, shape_key(shape): (new, now)}
    if len(factors) > MAX_BUCKETS:  # forget the shape not seen for longest
        del factors[min(factors, key=lambda k: factors[k][1])]
    return CapacityModel(factors)
