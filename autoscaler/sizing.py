"""How many replicas the load asks for, before any damping.

`scaling.targetQueueDepth` is the number of requests a replica may keep waiting. A queue
says the fleet is too small, never by how much it is too big, so the fleet is sized from
throughput, which is linear in load where queue length is not:

    replicas = (arrivals + excess queue / stable window) / (target utilization x capacity)

with capacity the learned requests/s of one full replica for the request shape of now
(`infleet.autoscaler.capacity`). The burst size uses the load projected to the moment a
new replica is ready; it enters panic when it wants `panic_threshold` times the serving
replicas. Two LLM saturation signals can only add: KV-cache usage and the engines'
request preemptions. Replicas whose metrics are missing are unknown: the fleet may grow
on the known part's load, and shrinks only by what the known part frees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infleet.autoscaler.load import Load
from infleet.autoscaler.spec import PolicySpec


@dataclass(slots=True)
class Recommendation:
    replicas: int  # what the load asks for now
    exact: float | None  # the same before rounding up (None: not from a rate)
    stable: int | None  # for the stable window's load (None: no counters yet)
    burst: int | None  # for the projected load
    panic: bool
    code: str  # CamelCase, for status.lastScalingDecision.reason and the Event
    reasons: list[str]


def ceil(x: float) -> int:
    return math.ceil(min(x, 1e9) - 1e-9)  # bounded: maxReplicas caps it anyway


def for_rate(spec: PolicySpec, load: Load, arrivals: float | None, waiting: float) -> int | None:
    """Replicas for a request rate and a queue (None: the rate is not known)."""
    exact = exact_for_rate(spec, load, arrivals, waiting)
    return None if exact is None else ceil(exact)


def exact_for_rate(
    spec: PolicySpec, load: Load, arrivals: float | None, waiting: float
) -> float | None:
    if arrivals is None:
        return None
    excess = waiting - spec.scaling.target_queue_depth * max(load.serving, 1)
    # Serve the arrivals and drain the excess queue within one stable window. (KEDA's
    # waiting/target would ask for a replica per `target` queued requests: a backlog is
    # not a sustained load, and that overshoots many times over.)
    drain = max(0.0, excess) / spec.tuning.stable_window_s
    return (arrivals + drain) / (spec.tuning.target_utilization * load.capacity)


def _without_counters(spec: PolicySpec, load: Load, current: int) -> int:
    """No finished-request counters yet (a fresh policy, new pods): the queue alone."""
    if load.waiting > spec.scaling.target_queue_depth * max(load.serving, 1):
        return max(current + 1, ceil(1.5 * load.serving))
    return 0 if load.depth <= 0 and not load.serving else current


def recommend(spec: PolicySpec, load: Load, current: int) -> Recommendation:
    t, target = spec.tuning, spec.scaling.target_queue_depth
    exact = exact_for_rate(spec, load, load.arrivals, load.waiting)
    stable = None if exact is None else ceil(exact)
    burst = for_rate(spec, load, load.projected, load.waiting_panic)
    per_replica = load.waiting / max(load.serving, 1)
    if stable is None:
        rec = _without_counters(spec, load, current)
        words = (
            f"{per_replica:.1f} waiting per replica (target {target:g}), no request counters yet"
        )
    else:
        rec = stable
        prompt, output = load.shape
        words = (
            f"{load.arrivals:.1f} req/s over {t.stable_window_s:.0f}s; a full replica serves "
            f"{load.capacity:.1f} req/s of {prompt:.0f}+{output:.0f} tokens, sized at "
            f"{t.target_utilization:.0%}; {per_replica:.1f} waiting per replica (target "
            f"{target:g}): wants {stable}"
        )
    reasons = [words]
    if load.unknown and stable is not None:
        # Unknown replicas hold their place: only the known part may free replicas.
        share = load.known / max(load.serving, 1)
        known_part = for_rate(spec, load, load.arrivals * share, load.waiting * share) or 0
        held = min(current, known_part + load.unknown)
        if held > rec:
            rec = held
            reasons.append(f"{load.unknown} replicas not reporting: kept, wants {rec}")
    code = (
        "QueueAtTarget"
        if rec == current
        else "QueueAboveTarget"
        if rec > current
        else "QueueBelowTarget"
    )
    # Panic is for bursts: a rise above noise that wants panic_threshold x the serving.
    panic = (
        load.rising
        and burst is not None
        and burst > current
        and burst >= t.panic_threshold * max(load.serving, 1)
    )
    if panic:
        reasons.append(
            f"burst: {load.arrivals_panic:.1f} req/s over {t.panic_window_s:.0f}s, "
            f"{load.projected:.1f} projected {load.lead_time_s:.0f}s ahead (a new replica's "
            f"start) wants {burst}, {burst / max(load.serving, 1):.1f}x the {load.serving} serving"
        )
    if load.kv_usage is not None and load.kv_usage > t.kv_usage_target and load.serving:
        kv_rec = ceil(load.serving * load.kv_usage / t.kv_usage_target)
        if kv_rec > rec:
            rec, code = kv_rec, "KVCacheSaturated"
            reasons.append(
                f"KV cache {load.kv_usage:.0%} full (target {t.kv_usage_target:.0%}) wants {kv_rec}"
            )
    budget, ratio = spec.slo.request_preemption_ratio, load.preemption_ratio
    if ratio is not None and load.serving and ratio > budget:
        pre_rec = load.serving + max(1, ceil(0.25 * load.serving))
        if pre_rec > rec:
            rec, code = pre_rec, "RequestPreemptionsOverBudget"
            reasons.append(
                f"engines preempt {ratio:.3f} per request (budget {budget:g}): "
                f"+25% capacity wants {pre_rec}"
            )
    return Recommendation(
        rec, exact if rec == stable else None, stable, burst, panic, code, reasons
    )
