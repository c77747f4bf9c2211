"""The autoscaling policy: one pure function from (spec, observation, state) to a decision.

The operator and the simulator both call `decide` every decision period and keep the
returned state for the next call; nothing else scales a fleet. It reads as three steps:
load (what the fleet carries, from the replicas' own counters), size (how many replicas
that asks for, damped), place (which pool runs them).
"""

from __future__ import annotations

from dataclasses import dataclass

from infleet.autoscaler.capacity import capacity, learn, steady_shape
from infleet.autoscaler.damping import Sized, damp
from infleet.autoscaler.load import Load, fleet_load
from infleet.autoscaler.placement import Placement, next_shift, place
from infleet.autoscaler.signals import Interval, measure
from infleet.autoscaler.sizing import recommend
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.spot_burn import BURN_LONG_S, burns
from infleet.autoscaler.state import PolicyState
from infleet.autoscaler.view import POOLS, READY, Observation

LEAD_TIME_BOUNDS_S = (10.0, 3600.0)


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
    load: Load
    state: PolicyState

    def message(self) -> str:
        """One line for `kubectl describe` and the InferenceService's Event."""
        return "; ".join(self.reasons)


def _cold_start_total(obs: Observation, spec: PolicySpec) -> int:
    """A policy with no memory (first decision, or an operator restart without a
    snapshot) starts from every replica asked for, loading ones included: a ReplicaSet
    scaled down deletes not-ready pods first."""
    listed = sum(1 for p in obs.pods if not p.notice)
    floor = spec.scaling.min_replicas if obs.pods else 0
    return max(listed, obs.desired or 0, floor)


def _lead_time(previous: float | None, obs: Observation, last_now: float | None) -> float | None:
    """Pod start plus model load, from the pods that became ready since the last decision
    (smoothed)."""
    if last_now is None:
        return previous
    lo, hi = LEAD_TIME_BOUNDS_S
    for p in obs.pods:
        if p.phase == READY and p.created is not None and p.since > last_now:
            took = min(max(p.since - p.created, lo), hi)
            previous = took if previous is None else 0.7 * previous + 0.3 * took
    return previous


def _load(spec: PolicySpec, obs: Observation, s: PolicyState) -> tuple[Load, Interval]:
    """Step 1: the load, and the state's memory of it brought up to now."""
    t, now = spec.tuning, obs.now
    interval, s.counters = measure(s.counters, obs, spec.full_waiting, t.stable_window_s)
    s.fleet.add(interval)
    shape = s.fleet.shape(
        now, t.stable_window_s, (t.default_prompt_tokens, t.default_output_tokens)
    )
    # What this interval teaches about capacity is used from the next decision on, so a
    # longer queue can never lower the replicas it asks for.
    per_replica = capacity(s.capacity, t, shape, now)
    if steady_shape(interval, shape):
        s.capacity = learn(s.capacity, t, shape, interval, now)
    s.lead_time_s = _lead_time(s.lead_time_s, obs, s.last_now)
    s.first_now = now if s.first_now is None else s.first_now
    if not interval.blind:
        s.last_read = now
        s.watched_since = now if s.watched_since is None else s.watched_since
    else:
        s.watched_since = None
    active = interval.blind or (interval.depth or 0.0) > 0 or (interval.finished or 0.0) > 0
    s.last_active = now if active or s.last_active is None else s.last_active
    clocks = (
        now - s.last_active,
        now - (s.last_read if s.last_read is not None else s.first_now) if interval.blind else 0.0,
        0.0 if s.watched_since is None else now - s.watched_since,
    )
    lead = s.lead_time_s if s.lead_time_s is not None else t.lead_time_s
    load = fleet_load(
        s.fleet,
        interval,
        t,
        per_replica,
        shape,
        lead,
        clocks,
        obs.activator_waiting is not None,
        obs.ttft_p95_s,
    )
    return load, interval


def _size(spec: PolicySpec, obs: Observation, s: PolicyState, load: Load) -> Sized:
    """Step 2: the total the load asks for, damped (a cold start holds what it found)."""
    current = s.total
    if current is None:
        current = _cold_start_total(obs, spec)
        s.damping.floor = (obs.now + spec.scaling.scale_down_stabilization_window_seconds, current)
    return damp(spec, recommend(spec, load, current), load, current, obs.now, s.damping)


def _place(
    spec: PolicySpec, obs: Observation, s: PolicyState, load: Load, sized: Sized, elapsed: float
) -> tuple[Placement, str, float]:
    """Step 3: the pools that run the total, the decision's reason, and the spot exposure
    accrued since the previous decision."""
    now = obs.now
    exposure = s.spot.record(obs, elapsed)
    budget = spec.slo.spot_preemptions_per_replica_hour
    burn = burns(budget, s.spot, now) if spec.tuning.dedicated_fallback else None
    s.spot.shift = next_shift(s.spot.shift, burn, elapsed)
    rate = s.spot.rate(now, BURN_LONG_S, 1.0)
    recent = s.spot.recent(now, spec.tuning.pending_timeout_s)
    previous = s.pools or tuple(sum(1 for p in obs.pods if p.pool == pool) for pool in POOLS)
    placement = place(sized.total, spec, obs.pods, now, s.spot.shift, rate, recent, previous)
    short = sum(previous) - placement.dedicated - placement.spot
    if load.blind and short > 0:
        # Blind, nothing shrinks: not even spot's over-provisioning as the hour's
        # interruption rate fades.
        placement.spot += short
        placement.reasons.append(f"blind: keeping {short} spot asked for before")
    reason = sized.code
    if burn is not None and burn[1] > 1.0:
        placement.reasons.append(
            f"spot interruptions {rate:.2f}/replica-hour burn {burn[1]:.1f}x the {budget:g} budget"
        )
        reason = "SpotInterruptionBudgetBurning"
    if placement.spot_gap:
        reason = "SpotGapCovered"
    if sized.code in ("ManualOverride", "MetricsUnavailable"):
        reason = sized.code
    return placement, reason, exposure


def decide(spec: PolicySpec, obs: Observation, state: PolicyState) -> Decision:
    s = state.for_spec(spec)
    elapsed = 0.0 if s.last_now is None else max(0.0, obs.now - s.last_now)
    load, _ = _load(spec, obs, s)
    sized = _size(spec, obs, s, load)
    placement, reason, exposure = _place(spec, obs, s, load, sized, elapsed)
    s.total, s.pools, s.last_now = sized.total, (placement.dedicated, placement.spot), obs.now
    return Decision(
        total=sized.total,
        dedicated=placement.dedicated,
        spot=placement.spot,
        spot_gap=placement.spot_gap,
        reason=reason,
        reasons=placement.reasons[:1] + sized.reasons + placement.reasons[1:],
        new_interruptions=len(obs.interruptions),
        spot_replica_seconds=exposure,
        load=load,
        state=s,
    )
