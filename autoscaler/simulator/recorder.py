"""Latency distributions built from cohorts, not requests.

The replica model hands over latencies as segments: `weight` requests whose latencies
are spread evenly between `lo` and `hi` (FIFO service of a cohort gives a linear ramp).
A segment lands in a log-binned histogram (1 ms to 10^4 s, 100 bins a decade, so a
quantile is good to 2.3%) through a difference array: O(1) however wide it is. SLO
attainment is exact per segment.
"""

from __future__ import annotations

import math
from itertools import accumulate

_FLOOR_S = 1e-3
_PER_DECADE = 100
_BINS = 7 * _PER_DECADE


class Histogram:
    __slots__ = ("diff", "total")

    def __init__(self) -> None:
        self.diff = [0.0] * (_BINS + 1)
        self.total = 0.0

    def add(self, lo: float, hi: float, weight: float) -> None:
        i0 = int(math.log10(lo / _FLOOR_S) * _PER_DECADE) if lo > _FLOOR_S else 0
        i1 = int(math.log10(hi / _FLOOR_S) * _PER_DECADE) if hi > _FLOOR_S else 0
        if i1 >= _BINS:
            i1 = _BINS - 1
            i0 = min(i0, i1)
        per_bin = weight / (i1 - i0 + 1)
        self.diff[i0] += per_bin
        self.diff[i1 + 1] -= per_bin
        self.total += weight

    def merge(self, other: Histogram) -> None:
        self.diff = [a + b for a, b in zip(self.diff, other.diff, strict=True)]
        self.total += other.total

    def quantile(self, q: float) -> float:
        """The q-quantile, to its bin's upper edge (0 for an empty histogram)."""
        if self.total <= 0:
            return 0.0
        goal, seen = q * self.total * (1 - 1e-9), 0.0
        for i, mass in enumerate(accumulate(self.diff)):
            seen += mass
            if seen >= goal:
                return _FLOOR_S * 10 ** ((i + 1) / _PER_DECADE)
        return _FLOOR_S * 10 ** (_BINS / _PER_DECADE)


class LatencyRecorder:
    """TTFT and end-to-end latency of every finished request, and TTFT SLO attainment
    (failed requests count against it). Per-minute TTFT feeds the plot."""

    __slots__ = (
        "_ttft",
        "attained",
        "e2e",
        "failures",
        "minute_attained",
        "minute_count",
        "minute_ttft",
        "start_s",
        "target_s",
        "windows",
    )

    def __init__(self, ttft_target_s: float, start_s: float = float("-inf")) -> None:
        self.target_s = ttft_target_s
        self.start_s = start_s  # requests that arrived earlier are not measured
        self._ttft = Histogram()  # everything before the current minute
        self.minute_ttft = Histogram()
        self.e2e = Histogram()
        self.attained = 0.0
        self.failures = 0  # requests given up on (timed out, or out of retries)
        self.minute_attained = 0.0
        self.minute_count = 0.0
        # [start, end, attained, judged] of requests that arrived in each window watched
        # (a fault's): attainment during a blackout, say.
        self.windows: list[list[float]] = []

    def watch(self, start_s: float, end_s: float) -> list[float]:
        window = [start_s, end_s, 0.0, 0.0]
        self.windows.append(window)
        return window

    @property
    def ttft(self) -> Histogram:
        self._ttft.merge(self.minute_ttft)
        self.minute_ttft = Histogram()
        return self._ttft

    def completed(
        self,
        arrived: float,
        ttft_lo: float,
        ttft_hi: float,
        e2e_lo: float,
        e2e_hi: float,
        weight: float,
    ) -> None:
        """`weight` requests that arrived from `arrived` on finished, their latencies
        spread evenly over the two ranges."""
        if arrived < self.start_s:
            return
        if ttft_lo > ttft_hi:
            ttft_lo, ttft_hi = ttft_hi, ttft_lo
        if e2e_lo > e2e_hi:
            e2e_lo, e2e_hi = e2e_hi, e2e_lo
        self.minute_ttft.add(ttft_lo, ttft_hi, weight)
        self.e2e.add(e2e_lo, e2e_hi, weight)
        target = self.target_s
        if ttft_hi <= target:
            good = weight
        elif ttft_lo >= target:
            good = 0.0
        else:
            good = weight * (target - ttft_lo) / (ttft_hi - ttft_lo)
        self.attained += good
        self.minute_attained += good
        self.minute_count += weight
        for w in self.windows:
            if w[0] <= arrived < w[1]:
                w[2] += good
                w[3] += weight

    def failed(self, arrived: float, weight: int) -> None:
        """Requests given up on: they miss the SLO (unless they predate the measurement)."""
        if arrived >= self.start_s:
            self.failures += weight
            self.minute_count += weight
            for w in self.windows:
                if w[0] <= arrived < w[1]:
                    w[3] += weight

    def take_minute(self) -> tuple[float | None, float]:
        """TTFT attainment (None when nothing finished or failed) and p95 TTFT of the
        requests since the previous call."""
        attained = self.minute_attained / self.minute_count if self.minute_count else None
        p95 = self.minute_ttft.quantile(0.95)
        self.minute_attained = self.minute_count = 0.0
        self._ttft.merge(self.minute_ttft)
        self.minute_ttft = Histogram()
        return attained, p95
