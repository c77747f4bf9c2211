"""One observation, turned into what the fleet did since the previous one.

Counters are differenced per replica (a counter below its previous value means the
engine restarted: its whole value is new); a replica seen for the first time teaches
nothing yet. Routing spreads requests evenly, so what the replicas that reported both
times did is scaled to every serving replica, and a replica that did not report this
time is unknown: it is counted at that same average, never as zero. When none reports,
the interval is blind and carries no load at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infleet.autoscaler.view import Observation, ReplicaMetrics

ACTIVATOR = "@activator"  # the counters' key for the activator's queue


@dataclass(slots=True)
class PodCounters:
    """What one replica reported last time."""

    t: float
    depth: float
    waiting: float
    finished: float | None
    preempted: float | None
    prompt_tokens: float | None
    output_tokens: float | None


Counters = dict[str, PodCounters]


@dataclass(slots=True)
class Interval:
    now: float
    serving: int  # ready replicas not under notice: where requests go
    known: int  # serving replicas that reported now
    unknown: int  # serving replicas that did not
    waiting: float | None  # requests waiting, whole fleet plus the activator (None: blind)
    depth: float | None  # requests waiting or running, likewise
    kv_usage: float | None  # mean over the replicas that reported
    # Over the interval, the whole fleet (None: no replica reported both times, or its
    # engine exports no such counter):
    dt: float = 0.0
    arrived: float | None = None  # requests that arrived: finished + growth in flight
    finished: float | None = None
    preempted: float | None = None
    prompt_tokens: float | None = None
    output_tokens: float | None = None
    full_rates: list[float] = field(default_factory=list)  # finished/s of replicas with a queue
    served_rate: float | None = None  # mean finished/s of a replica

    @property
    def blind(self) -> bool:
        return self.serving > 0 and self.known == 0


def _delta(now: float | None, before: float | None) -> float | None:
    if now is None or before is None:
        return None
    return now - before if now >= before else now  # an engine restart starts from zero


def _sum(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


def _counters(r: ReplicaMetrics, now: float) -> PodCounters:
    return PodCounters(
        now,
        r.depth,
        r.waiting,
        r.requests_total,
        r.preemptions_total,
        r.prompt_tokens_total,
        r.generation_tokens_total,
    )


def measure(
    previous: Counters, obs: Observation, full_waiting: float, max_gap_s: float
) -> tuple[Interval, Counters]:
    """The interval since the previous observation, and the counters to keep. Counters
    older than `max_gap_s` (a replica that was not read for a while) are not differenced:
    an average over a blackout is not the load now."""
    now = obs.now
    serving = {p.name for p in obs.serving()}
    reported = [r for r in obs.replicas if r.pod in serving]
    known, unknown = len(reported), len(serving) - len(reported)
    activator = obs.activator_waiting or 0.0
    current: Counters = {r.pod: _counters(r, now) for r in reported}
    current[ACTIVATOR] = PodCounters(now, activator, activator, None, None, None, None)
    if serving and not known:
        return Interval(now, len(serving), 0, unknown, None, None, None), current
    scale = len(serving) / known if known else 0.0
    kv = [r.kv_usage for r in reported if r.kv_usage is not None]
    interval = Interval(
        now,
        len(serving),
        known,
        unknown,
        waiting=sum(r.waiting for r in reported) * scale + activator,
        depth=sum(r.depth for r in reported) * scale + activator,
        kv_usage=sum(kv) / len(kv) if kv else None,
    )
    paired = [(r, previous[r.pod]) for r in reported if r.pod in previous]
    paired = [(r, c) for r, c in paired if 0 < now - c.t <= max_gap_s]
    gate = previous.get(ACTIVATOR)
    if gate is not None and not 0 < now - gate.t <= max_gap_s:
        gate = None
    gate_growth = activator - gate.depth if gate is not None else 0.0
    if not paired:
        if not serving and gate is not None:  # at zero: the activator alone
            interval.dt, interval.arrived = now - gate.t, max(0.0, gate_growth)
        return interval, current
    fleet = len(serving) / len(paired)
    finished = [_delta(r.requests_total, c.finished) for r, c in paired]
    interval.dt = sum(now - c.t for _, c in paired) / len(paired)
    interval.finished = _scaled(_sum(finished), fleet)
    interval.preempted = _scaled(
        _sum([_delta(r.preemptions_total, c.preempted) for r, c in paired]), fleet
    )
    interval.prompt_tokens = _scaled(
        _sum([_delta(r.prompt_tokens_total, c.prompt_tokens) for r, c in paired]), fleet
    )
    interval.output_tokens = _scaled(
        _sum([_delta(r.generation_tokens_total, c.output_tokens) for r, c in paired]), fleet
    )
    if interval.finished is not None:
        growth = sum(r.depth - c.depth for r, c in paired) * fleet
        interval.arrived = max(0.0, interval.finished + growth + gate_growth)
        rates = [
            d / (now - c.t) for d, (_, c) in zip(finished, paired, strict=True) if d is not None
        ]
        interval.served_rate = sum(rates) / len(rates)
        interval.full_rates = [
            rate
            for rate, (r, c) in zip(rates, paired, strict=True)
            # A queue at both ends of the interval: the replica served flat out all along
            # (a queue seen once may be a few long prompts arriving together). One that
            # finished nothing with a queue is stuck, not slow: it teaches nothing.
            if min(r.waiting, c.waiting) >= full_waiting and rate >= 1e-3
        ]
    return interval, current


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor
