"""Time windows over the policy's signals: its memory between decisions.

`Window` keeps (time, value) samples for a sliding span and answers means, sums and
peaks over any part of it; `Buckets` keeps sums per fixed-width bucket over a long span
(six hours of spot exposure in one-minute buckets). Both copy cheaply (a decision never
changes the state it was given) and turn into plain lists for the state snapshot.
No clocks, no I/O: every time comes from the observation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

Sample = tuple[float, float]


class Window:
    __slots__ = ("samples", "span_s")

    def __init__(self, span_s: float, samples: Iterable[Sample] = ()) -> None:
        self.span_s = span_s
        self.samples: list[Sample] = list(samples)

    def add(self, t: float, value: float) -> None:
        """Append a sample and forget those older than the span."""
        self.samples.append((t, value))
        start = t - self.span_s
        if self.samples[0][0] < start:
            self.samples = [s for s in self.samples if s[0] >= start]

    def values(self, now: float, span_s: float) -> list[float]:
        """Values of the samples in (now - span_s, now]."""
        return [v for t, v in self.samples if now - span_s < t <= now]

    def mean(self, now: float, span_s: float) -> float | None:
        recent = self.values(now, span_s)
        return sum(recent) / len(recent) if recent else None

    def total(self, now: float, span_s: float) -> float:
        return sum(self.values(now, span_s))

    def peak(self, now: float, span_s: float) -> float | None:
        return max(self.values(now, span_s), default=None)

    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def copy(self) -> Window:
        return Window(self.span_s, self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Window)
            and self.span_s == other.span_s
            and self.samples == other.samples
        )

    def __repr__(self) -> str:
        return f"Window({self.span_s:g}s, {len(self.samples)} samples)"


class Buckets:
    """Sums per `width_s` bucket (bucket i covers [i*width, (i+1)*width)) over a span."""

    __slots__ = ("span_s", "sums", "width_s")

    def __init__(self, width_s: float, span_s: float, sums: dict[int, float] | None = None):
        self.width_s, self.span_s = width_s, span_s
        self.sums: dict[int, float] = dict(sums or {})

    def add(self, t: float, value: float) -> None:
        i = math.floor(t / self.width_s)
        self.sums[i] = self.sums.get(i, 0.0) + value
        oldest = math.floor((t - self.span_s) / self.width_s)
        if min(self.sums) < oldest:
            self.sums = {k: v for k, v in self.sums.items() if k >= oldest}

    def total(self, now: float, span_s: float) -> float:
        """Sum of the buckets that overlap (now - span_s, now]."""
        first = math.floor((now - span_s) / self.width_s)
        return sum(v for k, v in self.sums.items() if k >= first)

    def copy(self) -> Buckets:
        return Buckets(self.width_s, self.span_s, self.sums)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Buckets)
            and (self.width_s, self.span_s) == (other.width_s, other.span_s)
            and self.sums == other.sums
        )

    def __repr__(self) -> str:
        return f"Buckets({self.width_s:g}s x {len(self.sums)})"
