"""The load on a service, from the intervals the policy has measured.

Knative's two windows: the stable one (60 s) says what the fleet carries, the panic one
(10 s) what it carries right now. Their difference is the rate of change, which the
policy projects to the moment a replica started now would be ready (the service's own
pod start plus model load, measured from its pods), so a ramp is met where it will be,
not where it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infleet.autoscaler.capacity import Shape
from infleet.autoscaler.signals import Interval
from infleet.autoscaler.spec import Tuning
from infleet.autoscaler.windows import Window

PROJECTION_CAP = 2.0  # a projection never asks for more than twice the load of now


@dataclass(slots=True)
class FleetWindows:
    """Per-interval samples of the fleet (only intervals in which some replica reported)."""

    arrival_rate: Window
    waiting: Window
    kv_usage: Window
    finished: Window
    preempted: Window
    shaped: Window  # finished requests of the intervals whose token counters are known
    prompt_tokens: Window
    output_tokens: Window

    @classmethod
    def over(cls, span_s: float) -> FleetWindows:
        return cls(*(Window(span_s) for _ in range(8)))

    def all(self) -> tuple[Window, ...]:
        return (self.arrival_rate, self.waiting, self.kv_usage, self.finished, self.preempted,
                self.shaped, self.prompt_tokens, self.output_tokens)  # fmt: skip

    def copy(self) -> FleetWindows:
        return FleetWindows(*(w.copy() for w in self.all()))

    def add(self, i: Interval) -> None:
        if i.waiting is None:  # blind: no sample at all, never a zero
            return
        t = i.now
        self.waiting.add(t, i.waiting)
        if i.kv_usage is not None:
            self.kv_usage.add(t, i.kv_usage)
        if i.arrived is not None and i.dt > 0:
            self.arrival_rate.add(t, i.arrived / i.dt)
        if i.finished is not None:
            self.finished.add(t, i.finished)
            if i.preempted is not None:
                self.preempted.add(t, i.preempted)
            if i.prompt_tokens is not None and i.output_tokens is not None:
                self.shaped.add(t, i.finished)
                self.prompt_tokens.add(t, i.prompt_tokens)
                self.output_tokens.add(t, i.output_tokens)

    def shape(self, now: float, span_s: float, default: Shape) -> Shape:
        """Mean prompt and output tokens of the requests finished in the window."""
        done = self.shaped.total(now, span_s)
        if done < 1.0:
            return default
        prompt = self.prompt_tokens.total(now, span_s) / done
        output = self.output_tokens.total(now, span_s) / done
        return (max(prompt, 1.0), max(output, 1.0))


@dataclass(slots=True)
class Load:
    arrivals: float | None  # requests/s over the stable window (None: no counters yet)
    arrivals_panic: float | None  # over the panic window
    projected: float | None  # at the moment a replica started now would be ready
    rising: bool  # the panic window is above the stable one by more than noise
    waiting: float  # mean over the stable window, fleet plus activator
    waiting_panic: float
    depth: float  # in flight now (0 when blind)
    serving: int
    known: int
    unknown: int
    capacity: float  # requests/s of one full replica, for `shape`
    shape: Shape
    kv_usage: float | None
    preemption_ratio: float | None  # preemptions per finished request, stable window
    lead_time_s: float
    idle_s: float  # since the service last held or finished a request (blind is not idle)
    activator: bool
    blind: bool  # replicas serve and none of them reported
    blind_s: float  # since the fleet was last read (0 when not blind)
    watched_s: float  # since the policy has read the fleet without a gap
    ttft_p95_s: float | None  # from elsewhere than the replicas (see Observation)


def rise(arrivals: float | None, panic: float | None, tuning: Tuning) -> float:
    """How far the panic window's rate is above the stable window's, in requests/s, or 0
    when that is noise: within five standard deviations of a Poisson count over the panic
    window, or under a fifth of the stable rate (a false trend would double the fleet)."""
    if arrivals is None or panic is None:
        return 0.0
    w = tuning.panic_window_s
    noise = max(5.0 * math.sqrt(max(arrivals, panic) * w) / w, 0.2 * arrivals)
    return panic - arrivals if panic - arrivals > noise else 0.0


def projected(
    arrivals: float | None, panic: float | None, tuning: Tuning, lead_s: float
) -> float | None:
    """The arrival rate extrapolated from the two windows to `lead_s` from now: the
    stable window's mean sits half a stable window back, the panic window's half a panic
    window, and the slope between them (when it is not noise) is carried forward."""
    if panic is None:
        return arrivals
    slope = rise(arrivals, panic, tuning) / ((tuning.stable_window_s - tuning.panic_window_s) / 2)
    return min(panic + slope * lead_s, PROJECTION_CAP * panic)


def fleet_load(
    windows: FleetWindows,
    interval: Interval,
    tuning: Tuning,
    capacity: float,
    shape: Shape,
    lead_time_s: float,
    clocks: tuple[float, float, float],
    activator: bool,
    ttft_p95_s: float | None,
) -> Load:
    """`clocks`: seconds idle, blind, and watched (see Load)."""
    idle_s, blind_s, watched_s = clocks
    now, stable, panic = interval.now, tuning.stable_window_s, tuning.panic_window_s
    arrivals = windows.arrival_rate.mean(now, stable)
    arrivals_panic = windows.arrival_rate.mean(now, panic)
    finished = windows.finished.total(now, stable)
    preempted = windows.preempted.total(now, stable)
    return Load(
        arrivals=arrivals,
        arrivals_panic=arrivals_panic,
        projected=projected(arrivals, arrivals_panic, tuning, lead_time_s),
        rising=rise(arrivals, arrivals_panic, tuning) > 0,
        waiting=windows.waiting.mean(now, stable) or 0.0,
        waiting_panic=windows.waiting.mean(now, panic) or 0.0,
        depth=interval.depth or 0.0,
        serving=interval.serving,
        known=interval.known,
        unknown=interval.unknown,
        capacity=capacity,
        shape=shape,
        kv_usage=windows.kv_usage.mean(now, stable),
        preemption_ratio=preempted / finished if finished > 0 and windows.preempted else None,
        lead_time_s=lead_time_s,
        idle_s=idle_s,
        activator=activator,
        blind=interval.blind,
        blind_s=blind_s,
        watched_s=watched_s,
        ttft_p95_s=ttft_p95_s,
    )
