"""Where requests come from: rate curves (Poisson, diurnal, bursty), a CSV trace, phases
of either (a shift in prompt length), or several tenants at once.

Every stream hands the fleet, per tick and per routing target, a cohort: how many requests
arrived and their summed prompt and output tokens; a mix of tenants is several streams
(their requests keep their own shapes). Routing is random (what a Kubernetes
Service does), so a Poisson stream splits into independent Poisson streams per replica
and one draw per replica per tick replaces one draw per request.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path

from infleet.autoscaler.simulator.randoms import poisson_many
from infleet.autoscaler.simulator.trace_csv import read_trace

Arrived = tuple[int, float, float]  # requests, their prompt tokens, their output tokens
_TWO_PI = 2.0 * math.pi


class TokenShape:
    """Lognormal prompt and output lengths, given by their means (the Azure trace's shape:
    long-tailed prompts, shorter outputs)."""

    __slots__ = ("_cv", "output_mean", "prompt_mean", "sigma")

    def __init__(
        self, prompt_mean: float = 1024.0, output_mean: float = 256.0, sigma: float = 0.8
    ) -> None:
        if prompt_mean < 1 or output_mean < 1 or sigma < 0:
            raise ValueError("token shape: means must be >= 1 and sigma >= 0")
        self.prompt_mean, self.output_mean, self.sigma = prompt_mean, output_mean, sigma
        self._cv = math.sqrt(math.exp(sigma**2) - 1.0)  # lognormal std / mean

    def sums(self, n: int, rng: random.Random) -> tuple[float, float]:
        """Summed prompt and output tokens of n requests (normal approximation of the sum,
        floored at one token per request)."""
        if n == 0:
            return 0.0, 0.0
        # Two independent standard normals from one Box-Muller draw (random.gauss is a
        # Python-level call; this is the simulator's second-hottest line).
        radius = math.sqrt(-2.0 * math.log(1.0 - rng.random())) * math.sqrt(n) * self._cv
        angle = _TWO_PI * rng.random()
        prompt = self.prompt_mean * (n + radius * math.cos(angle))
        output = self.output_mean * (n + radius * math.sin(angle))
        return (prompt if prompt > n else float(n)), (output if output > n else float(n))


class RateArrivals:
    """Poisson arrivals with a time-varying rate `rate(t)` (requests per second).
    Before t=0 (the simulator's warm-up) the rate holds at rate(0)."""

    def __init__(self, rate: Callable[[float], float], tokens: TokenShape) -> None:
        self.rate = rate
        self.tokens = tokens
        self.streams = (self,)

    def cohorts(self, t: float, dt: float, targets: int, rng: random.Random) -> list[Arrived]:
        mean = self.rate(max(t + dt / 2, 0.0)) * dt / targets
        sums = self.tokens.sums
        return [(n, *sums(n, rng)) for n in poisson_many(mean, targets, rng)]


def diurnal_rate(
    peak_rps: float,
    peak_to_trough: float = 4.0,
    period_s: float = 86_400.0,
    peak_at_s: float = 14 * 3600.0,
    bursts: tuple[tuple[float, float, float], ...] = (),
) -> Callable[[float], float]:
    """A cosine day between peak/peak_to_trough and peak, plus bursts
    (start_s, duration_s, multiplier) that multiply the rate while they last."""
    trough = peak_rps / peak_to_trough
    mid, amp = (peak_rps + trough) / 2, (peak_rps - trough) / 2

    def rate(t: float) -> float:
        base = mid + amp * math.cos(2 * math.pi * (t - peak_at_s) / period_s)
        for start, length, mult in bursts:
            if start <= t < start + length:
                base *= mult
        return base

    return rate


class TraceArrivals:
    """Requests replayed from a CSV trace with columns timestamp, input tokens, output
    tokens (the Azure LLM inference trace's shape). Timestamps are seconds (or ISO
    datetimes) and are shifted so the first request arrives at t=0."""

    def __init__(self, times: list[float], prompts: list[int], outputs: list[int]) -> None:
        self.times, self.prompts, self.outputs = times, prompts, outputs
        self.streams = (self,)

    @classmethod
    def from_csv(cls, path: str | Path, speedup: float = 1.0) -> TraceArrivals:
        times, prompts, outputs = read_trace(Path(path))
        return cls([t / speedup for t in times], prompts, outputs)

    @property
    def duration_s(self) -> float:
        return self.times[-1] if self.times else 0.0

    def cohorts(self, t: float, dt: float, targets: int, rng: random.Random) -> list[Arrived]:
        lo, hi = bisect_left(self.times, t), bisect_left(self.times, t + dt)
        counts = [0] * targets
        prompts = [0.0] * targets
        outputs = [0.0] * targets
        for i in range(lo, hi):
            k = rng.randrange(targets)
            counts[k] += 1
            prompts[k] += self.prompts[i]
            outputs[k] += self.outputs[i]
        return list(zip(counts, prompts, outputs, strict=True))


class PhasedArrivals:
    """One stream that changes at given times: `phases` are (start_s, stream), sorted;
    the first applies before its start too."""

    def __init__(self, phases: list[tuple[float, RateArrivals]]) -> None:
        self.starts = [start for start, _ in phases]
        self.phases = [stream for _, stream in phases]
        self.streams = (self,)

    def cohorts(self, t: float, dt: float, targets: int, rng: random.Random) -> list[Arrived]:
        i = max(0, bisect_left(self.starts, t + 1e-9) - 1)
        return self.phases[i].cohorts(t, dt, targets, rng)


class MixedArrivals:
    """Several tenants on one service, each its own stream (rate curve and shape)."""

    def __init__(self, tenants: list[RateArrivals | PhasedArrivals]) -> None:
        self.streams = tuple(tenants)


Arrivals = RateArrivals | TraceArrivals | PhasedArrivals | MixedArrivals
