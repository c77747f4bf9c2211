"""The autoscaling policy: one pure function from (spec, observation, state) to a decision.

The operator's timer and the simulator both call `decide` every decision period and keep
the returned state for the next call; nothing else scales a fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from infleet.autoscaler import signals
from infleet.autoscaler.placement import next_shift, place
from infleet.autoscaler.sizing import RATE_LIMIT_WINDOW_S, Load, size_total
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.view import POOLS, Observation

BURN_SHORT_S = 300.0
BURN_LONG_S = 3600.0
BURN_RECOVERY_S = 6 * 3600.0


@dataclass(slots=True)
class PolicyState:
    """What the policy remembers between decisions (all times on the observation clock)."""

    depth: list[tuple[float, float]] = field(default_factory=list)
    waiting: list[tuple[float, float]] = field(default_factory=list)
    kv_usage: list[tuple[float, float]] = field(default_factory=list)
    counters: signals.Counters = field(default_factory=dict)
    preemptions: list[tuple[float, float]] = field(default_factory=list)
    finished: list[tuple[float, float]] = field(default_factory=list)
    recommendations: list[tuple[float, float]] = field(default_factory=list)
    totals: list[tuple[float, float]] = field(default_factory=list)
    interruptions: list[float] = field(default_factory=list)
    spot_exposure: list[tuple[float, float]] = field(default_factory=list)  # replica-seconds
    capacity: float | None = None  # learned requests/s of a replica with a queue
    total: int | None = None
    dedicated: int | None = None
    spot: int | None = None
    panic_until: float = float("-inf")
    last_active: float | None = None
    first_now: float | None = None
    last_now: float | None = None
    shift: float = 0.0


@dataclass(slots=True)
class Decision:
    total: int  # replicas the service should serve with
    dedicated: int  # the pools' Deployment replicas
    spot: int
    spot_gap: int  # dedicated replicas covering spot that is not serving
    reason: str  # CamelCase, for status.lastScalingDecision.reason and the Event
    reasons: list[str]
    new_interruptions: int
    spot_replica_seconds: float  # spot exposure accrued since the previous decision
    state: PolicyState

    def message(self) -> str:
        """One line for `kubectl describe` and the InferenceService's Event."""
        return "; ".join(self.reasons)


def _current_total(state: PolicyState, obs: Observation, min_replicas: int) -> int:
    if state.total is not None:
        return state.total
    # First decision (or after an operator restart): start from what serves now.
    return max(obs.ready(), min_replicas if obs.pods else 0)


def _learn_capacity(previous: float | None, full_rates: list[float]) -> float | None:
    """A replica with a queue serves as fast as it can: average those, smoothed. A
    replica that finished nothing with a queue is stuck, not slow: it teaches nothing."""
    full_rates = [r for r in full_rates if r >= 1e-3]
    if not full_rates:
        return previous
    now = sum(full_rates) / len(full_rates)
    return now if previous is None else 0.8 * previous + 0.2 * now


def _burn(
    budget: float | None, interruptions: list[float], exposure: list, now: float
) -> tuple[float, float, float] | None:
    """Spot interruption burn rates over 5 minutes, 1 hour and 6 hours.

    Exposure floors: the long windows need the exposure in which the budget allows three
    interruptions, so one unlucky interruption does not read as a storm; the short window
    only confirms the burn is still going on. A zero budget burns on any interruption.
    """
    if budget is None:
        return None
    burns = []
    for window, allowed in ((BURN_SHORT_S, 0.5), (BURN_LONG_S, 3.0), (BURN_RECOVERY_S, 3.0)):
        floor = allowed / budget if budget > 0 else 1.0
        rate = signals.interruption_rate(interruptions, exposure, now, window, floor)
        burns.append(rate / budget if budget > 0 else (math.inf if rate > 0 else 0.0))
    return burns[0], burns[1], burns[2]


def decide(spec: PolicySpec, obs: Observation, state: PolicyState) -> Decision:
    now = obs.now
    scaling, slo = spec.scaling, spec.slo
    keep = max(scaling.stable_window_s, scaling.panic_window_s)
    elapsed = 0.0 if state.last_now is None else max(0.0, now - state.last_now)

    depth = signals.roll(state.depth, now - keep, (now, signals.fleet_depth(obs)))
    waiting = signals.roll(state.waiting, now - keep, (now, signals.fleet_waiting(obs)))
    kv_now = signals.mean_kv_usage(obs)
    kv = signals.since(state.kv_usage, now - keep)
    if kv_now is not None:
        kv.append((now, kv_now))
    full_waiting = max(1.0, scaling.target_queue_depth / 2)
    d_pre, d_req, known, full_rates, counters = signals.counter_deltas(
        state.counters, obs, full_waiting
    )
    # Pods come and go between observations: scale the finished requests of the pods seen
    # both times to the whole fleet (routing spreads requests evenly), or mark unknown.
    scale = 1.0
    if len(obs.replicas) > known:
        scale = len(obs.replicas) / known if known else math.nan
    served, preempted = d_req * scale, d_pre * scale
    preemptions = signals.roll(state.preemptions, now - keep, (now, preempted))
    finished = signals.roll(state.finished, now - keep, (now, served))
    exposure_now = obs.ready("spot") * elapsed
    # Spot exposure, in one-minute buckets (six hours of it is kept).
    exposure = signals.since(state.spot_exposure, now - BURN_RECOVERY_S)
    if exposure and exposure[-1][0] > now - 60.0:
        exposure[-1] = (exposure[-1][0], exposure[-1][1] + exposure_now)
    else:
        exposure.append((now, exposure_now))
    interruptions = [t for t in state.interruptions if t > now - BURN_RECOVERY_S]
    interruptions += list(obs.interruptions)
    # What this observation teaches about capacity is used from the next decision on, so
    # a longer queue can never lower the replicas it asks for (monotone in queue depth).
    capacity = _learn_capacity(state.capacity, full_rates)
    counted = all(r.requests_total is not None for r in obs.replicas)

    active = depth[-1][1] > 0 or d_req > 0
    last_active = now if active or state.last_active is None else state.last_active
    first_now = now if state.first_now is None else state.first_now
    window = scaling.stable_window_s
    finished_in_window = signals.window_sum(finished, now, window)
    panic_window = scaling.panic_window_s
    load = Load(
        arrivals_stable=signals.arrival_rate(depth, finished, now, window) if counted else None,
        arrivals_panic=(
            signals.arrival_rate(depth, finished, now, panic_window) if counted else None
        ),
        waiting_stable=signals.window_mean(waiting, now, window),
        waiting_panic=signals.window_mean(waiting, now, panic_window),
        depth=depth[-1][1],
        ready=obs.ready(),
        capacity=state.capacity,
        kv_usage=signals.window_mean(kv, now, window) if kv else None,
        preemption_ratio=(
            signals.window_sum(preemptions, now, window) / finished_in_window
            if finished_in_window > 0
            else None
        ),
        idle_s=now - last_active,
        activator=obs.activator_waiting is not None,
        observed_s=now - first_now,
    )
    current = _current_total(state, obs, scaling.min_replicas)
    sizing = size_total(
        scaling, slo, load, current, now, state.panic_until, state.recommendations, state.totals
    )

    budget = slo.spot_preemptions_per_replica_hour
    burns = _burn(budget, interruptions, exposure, now)
    burn_long = None if burns is None else burns[1]
    shift = next_shift(state.shift, burns, elapsed)
    rate = signals.interruption_rate(interruptions, exposure, now, BURN_LONG_S, 1.0)
    recent = sum(1 for t in interruptions if t > now - spec.capacity.spot.pending_timeout_s)
    previous = (state.dedicated, state.spot)
    if state.dedicated is None or state.spot is None:  # first decision: the pools as they are
        previous = tuple(sum(1 for p in obs.pods if p.pool == pool) for pool in POOLS)
    placement = place(sizing.total, spec.capacity, obs.pods, now, shift, rate, recent, previous)
    reason = sizing.reason
    if burn_long is not None and burn_long > 1.0:
        placement.reasons.append(
            f"spot interruptions {rate:.2f}/replica-hour burn {burn_long:.1f}x the "
            f"{budget:g} budget"
        )
        reason = "SpotInterruptionBudgetBurning"
    if placement.spot_gap:
        reason = "SpotGapCovered"
    if sizing.reason == "ManualOverride":
        reason = sizing.reason

    hold = max(scaling.scale_up_stabilization_s, scaling.scale_down_stabilization_s)
    new_state = PolicyState(
        depth=depth,
        waiting=waiting,
        kv_usage=kv,
        counters=counters,
        preemptions=preemptions,
        finished=finished,
        recommendations=signals.roll(
            state.recommendations, now - hold, (now, sizing.recommendation)
        ),
        totals=signals.roll(state.totals, now - RATE_LIMIT_WINDOW_S, (now, sizing.total)),
        interruptions=interruptions,
        spot_exposure=exposure,
        capacity=capacity,
        total=sizing.total,
        dedicated=placement.dedicated,
        spot=placement.spot,
        panic_until=sizing.panic_until,
        last_active=last_active,
        first_now=first_now,
        last_now=now,
        shift=shift,
    )
    return Decision(
        total=sizing.total,
        dedicated=placement.dedicated,
        spot=placement.spot,
        spot_gap=placement.spot_gap,
        reason=reason,
        reasons=placement.reasons[:1] + sizing.reasons + placement.reasons[1:],
        new_interruptions=len(obs.interruptions),
        spot_replica_seconds=exposure_now,
        state=new_state,
    )
