"""From the load's recommendation to the total the fleet runs: damping and its memory.

In order: `kubectl scale` pins the total; a blind fleet holds (and grows only on the
service's TTFT); the tolerance band; panic (a burst's recommendation goes straight
through and nothing shrinks while it lasts); the HPA's stabilization windows; no
scale-down before a full stable window has been read (a fresh or restarted policy, or
metrics just back); bursts that recur keep their capacity through the gaps between
them; a cold start never goes below the replicas it found; per-minute rate limits;
min/max and scale to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from infleet.autoscaler.load import Load
from infleet.autoscaler.sizing import Recommendation, ceil, for_rate
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.windows import Window

RATE_LIMIT_WINDOW_S = 60.0


@dataclass(slots=True)
class Damping:
    recommendations: Window  # what the load asked for, for the stabilization windows
    totals: Window  # what the fleet was sized to, for the rate limits
    # When each burst began, and the arrival rate it reached (req/s): a load, not
    # replicas, since the replicas a load needs change with the request shape.
    bursts: Window
    panic_until: float = float("-inf")
    floor: tuple[float, int] | None = None  # cold start: (until, replicas found)

    @classmethod
    def empty(cls) -> Damping:
        return cls(Window(0.0), Window(0.0), Window(0.0))

    @staticmethod
    def spans(spec: PolicySpec) -> tuple[float, float, float]:
        """How far back each window must see for this spec."""
        s = spec.scaling
        longest = max(
            s.scale_up_stabilization_window_seconds, s.scale_down_stabilization_window_seconds
        )
        return float(longest), RATE_LIMIT_WINDOW_S, 2 * spec.tuning.burst_hold_max_s

    def windows(self) -> tuple[Window, Window, Window]:
        return self.recommendations, self.totals, self.bursts

    def copy(self) -> Damping:
        return Damping(
            self.recommendations.copy(),
            self.totals.copy(),
            self.bursts.copy(),
            self.panic_until,
            self.floor,
        )


@dataclass(slots=True)
class Sized:
    total: int
    code: str
    reasons: list[str]


def burst_hold_s(spec: PolicySpec, bursts: Window, now: float) -> float:
    """How long a burst's capacity is kept: `burst_hold_gaps` times the mean gap between
    the bursts remembered, within [scale-down stabilization, burst_hold_max_s]; no longer
    than the stabilization window until two bursts have been seen."""
    t = spec.tuning
    floor = float(spec.scaling.scale_down_stabilization_window_seconds)
    times = [s[0] for s in bursts.samples if s[0] > now - bursts.span_s]
    if len(times) < 2:
        return floor
    gap = (times[-1] - times[0]) / (len(times) - 1)
    return min(max(t.burst_hold_gaps * gap, floor), max(t.burst_hold_max_s, floor))


def _pinned(spec: PolicySpec) -> Sized:
    s, wanted = spec.scaling, spec.replicas or 0
    pinned = min(max(wanted, s.min_replicas), s.max_replicas)
    words = f"held at {pinned} by spec.replicas (kubectl scale)"
    if pinned != wanted:
        words += f", clamped from {wanted} to min/maxReplicas"
    return Sized(pinned, "ManualOverride", [words])


def _blind(spec: PolicySpec, load: Load, current: int) -> Sized:
    words = (
        f"no replica has reported metrics for {load.blind_s:.0f}s: holding {current} "
        "(blind is not idle)"
    )
    desired, objective = current, spec.slo.ttft_p95_seconds
    past_grace = load.blind_s >= spec.tuning.blind_grace_s
    if past_grace and load.ttft_p95_s is not None and load.ttft_p95_s > objective:
        desired = current + max(1, ceil(0.25 * current))
        words += (
            f"; the service's TTFT p95 {load.ttft_p95_s:.2f}s is over its {objective:g}s "
            f"objective: +25% wants {desired}"
        )
    return Sized(desired, "MetricsUnavailable", [words])


def _stabilized(
    spec: PolicySpec, rec: Recommendation, load: Load, current: int, now: float, d: Damping
) -> Sized:
    s, t = spec.scaling, spec.tuning
    up, down = s.scale_up_stabilization_window_seconds, s.scale_down_stabilization_window_seconds
    sized = Sized(rec.replicas, rec.code, list(rec.reasons))
    # The tolerance band, on the load's own number before rounding (as the HPA's ratio).
    wanted = rec.exact if rec.exact is not None else float(rec.replicas)
    if current and abs(wanted - current) <= t.tolerance * current:
        sized.total = current
    if rec.panic:
        last = d.bursts.last()
        # A panic soon after the last one is the same burst (one that overlaps another).
        if now >= d.panic_until and (last is None or now - last[0] > t.stable_window_s + down):
            d.bursts.add(now, 0.0)
        d.panic_until = now + t.stable_window_s
    panic = now < d.panic_until
    if panic:
        began, peak = d.bursts.last() or (now, 0.0)
        d.bursts.samples[-1:] = [(began, max(peak, load.arrivals or 0.0))]
        sized.total, sized.code = max(sized.total, rec.burst or 0, current), "PanicBurst"
        sized.reasons.append(f"panic mode until t={d.panic_until:.0f}s: no scale-down")
    if sized.total > current and current and not panic:
        held = max(current, int(min([rec.replicas, *d.recommendations.values(now, up)])))
        if held < sized.total:
            sized.reasons.append(f"scale-up held at {held} by {up}s stabilization")
            sized.total = held
    if sized.total < current and load.watched_s < t.stable_window_s:
        sized.reasons.append(f"no scale-down before {t.stable_window_s:.0f}s of metrics are read")
        sized.total = current
    if sized.total < current:
        held = min(current, int(max([rec.replicas, *d.recommendations.values(now, down)])))
        if held > sized.total:
            sized.reasons.append(f"scale-down held at {held} by {down}s stabilization")
            sized.total = held
    if sized.total < current:
        hold = burst_hold_s(spec, d.bursts, now)
        peak = d.bursts.peak(now, hold)
        # Sized with what a replica serves now: a "burst" of 8k-token prompts is held
        # as the replicas its rate needs at today's 1k-token capacity, not at its own.
        needed = None if peak is None else for_rate(spec, load, peak, 0.0)
        if needed is not None and needed > sized.total:
            sized.total = min(current, needed)
            sized.reasons.append(
                f"keeping {sized.total} for bursts ({len(d.bursts)} in "
                f"{d.bursts.span_s / 3600:.0f} h): capacity held {hold / 60:.0f} min after one"
            )
    return sized


def damp(
    spec: PolicySpec, rec: Recommendation, load: Load, current: int, now: float, d: Damping
) -> Sized:
    """The total to run. Updates `d` (the caller's own copy)."""
    if spec.replicas is not None:
        return _pinned(spec)
    s, t = spec.scaling, spec.tuning
    blind = load.blind
    d.recommendations.add(now, float(current if blind else rec.replicas))
    sized = _blind(spec, load, current) if blind else _stabilized(spec, rec, load, current, now, d)
    if d.floor is not None and now < d.floor[0] and sized.total < d.floor[1]:
        sized.reasons.append(
            f"started cold with {d.floor[1]} replicas: none go before t={d.floor[0]:.0f}s"
        )
        sized.total = d.floor[1]
    # Rate limits relative to the fleet over the last minute.
    recent = [*d.totals.values(now, RATE_LIMIT_WINDOW_S), float(current)]
    low, high = int(min(recent)), int(max(recent))
    # Limits on moving: never a reason to move the other way from the current total.
    up_limit = max(ceil(low * t.scale_up_factor), low + t.scale_up_min_step, current)
    down_limit = min(high - max(1, int(high * t.scale_down_fraction)), current)
    if sized.total > up_limit and now >= d.panic_until:  # a burst is not rate-limited
        sized.reasons.append(f"scale-up limited to {up_limit} this minute")
        sized.total = up_limit
    if sized.total < down_limit:
        sized.reasons.append(f"scale-down limited to {down_limit} this minute")
        sized.total = down_limit
    # Bounds, and scale to zero when idle long enough with an activator in front.
    floor = max(s.min_replicas, 1)
    if s.scale_to_zero.enabled and load.idle_s >= s.scale_to_zero.idle_seconds:
        if load.activator:
            floor = 0
            if sized.total == 0:
                sized.code = "ScaledToZero"
                if current:
                    sized.reasons.append(f"idle for {load.idle_s:.0f}s: scaling to zero")
        else:
            sized.reasons.append("idle, but no activator holds requests at zero: keeping 1")
    if sized.total < floor:
        sized.reasons.append(f"raised to minReplicas {floor}")
        sized.total, sized.code = floor, "AtMinReplicas"
    if sized.total > s.max_replicas:
        sized.reasons.append(f"capped at maxReplicas {s.max_replicas}")
        sized.total, sized.code = s.max_replicas, "AtMaxReplicas"
    if current == 0 and sized.total > 0 and load.depth > 0:
        sized.code = "ActivatedFromZero"
    d.totals.add(now, float(sized.total))
    return sized
