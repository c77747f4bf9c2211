"""Windowed signals the policy decides on, computed from raw observations.

Everything here is arithmetic on (time, value) samples the policy state carries from one
decision to the next; no clocks, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from infleet.autoscaler.view import Observation

Samples = Sequence[tuple[float, float]]


def since(samples: Iterable[tuple[float, float]], start: float) -> list[tuple[float, float]]:
    """Samples newer than `start` (exclusive)."""
    return [s for s in samples if s[0] > start]


def roll(
    samples: Iterable[tuple[float, float]], start: float, new: tuple[float, float]
) -> list[tuple[float, float]]:
    """The samples newer than `start`, then `new`: a sliding window one step on."""
    return [*since(samples, start), new]


def window_mean(samples: Samples, now: float, window_s: float) -> float:
    """Mean of the values seen in the last `window_s` seconds (0 when there are none)."""
    recent = [v for t, v in samples if t > now - window_s]
    return sum(recent) / len(recent) if recent else 0.0


def window_sum(samples: Samples, now: float, window_s: float) -> float:
    """Sum over the window; NaN marks an unknown sample and is skipped."""
    return sum(v for t, v in samples if t > now - window_s and v == v)


def fleet_depth(obs: Observation) -> float:
    """Requests the whole service holds: in every replica plus at the activator."""
    return sum(r.depth for r in obs.replicas) + (obs.activator_waiting or 0.0)


def fleet_waiting(obs: Observation) -> float:
    return sum(r.waiting for r in obs.replicas) + (obs.activator_waiting or 0.0)


def mean_kv_usage(obs: Observation) -> float | None:
    values = [r.kv_usage for r in obs.replicas if r.kv_usage is not None]
    return sum(values) / len(values) if values else None


Counters = dict[str, tuple[float, float, float, float]]  # pod -> (t, preempt, done, waiting)


def counter_deltas(
    previous: Counters, obs: Observation, full_waiting: float
) -> tuple[float, float, int, list[float], Counters]:
    """Preemptions and finished requests since the previous observation, summed over the
    pods seen both times (also returned: how many), and the finish rate of each pod that
    ends the interval with a queue (>= full_waiting).

    A counter below its previous value means the engine restarted: its whole value is new.
    A pod seen for the first time contributes nothing (its history is unknown).
    """
    d_preempt = d_requests = 0.0
    known = 0
    full_rates: list[float] = []
    current: Counters = {}
    for r in obs.replicas:
        pre, done = r.preemptions_total or 0.0, r.requests_total or 0.0
        current[r.pod] = (obs.now, pre, done, r.waiting)
        before = previous.get(r.pod)
        if before is None:
            continue
        t0, pre0, done0, _ = before
        known += 1
        dp = pre - pre0 if pre >= pre0 else pre
        dr = done - done0 if done >= done0 else done
        d_preempt += dp
        d_requests += dr
        # A queue at the end of the interval: the replica was serving flat out (if the
        # queue only just formed, this underestimates it: the safe side).
        full = r.waiting >= full_waiting
        if full and r.requests_total is not None and obs.now > t0 and done >= done0:
            full_rates.append(dr / (obs.now - t0))
    return d_preempt, d_requests, known, full_rates, current


def arrival_rate(depth: Samples, finished: Samples, now: float, window_s: float) -> float | None:
    """Requests per second that arrived over the window: those that finished plus the
    growth of what is in flight. None until two samples span some time. A finished
    sample of NaN (no pod with history) restarts the window after it."""
    inside = [(t, v) for t, v in depth if t >= now - window_s]
    unknown = {t for t, v in finished if v != v}
    for i in range(len(inside) - 1, -1, -1):
        if inside[i][0] in unknown:
            inside = inside[i:]
            break
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    (t0, depth0), (t1, depth1) = inside[0], inside[-1]
    done = sum(v for t, v in finished if t0 < t <= t1)
    return max(0.0, (done + depth1 - depth0) / (t1 - t0))


def interruption_rate(
    interruptions: Iterable[float],
    exposure: Samples,
    now: float,
    window_s: float,
    min_exposure_h: float,
) -> float:
    """Spot interruptions per spot replica-hour over the last `window_s` seconds.

    The exposure floor keeps one interruption on a tiny fleet from reading as a storm.
    """
    count = sum(1 for t in interruptions if t > now - window_s)
    hours = window_sum(exposure, now, window_s) / 3600.0
    return count / max(hours, min_exposure_h)
