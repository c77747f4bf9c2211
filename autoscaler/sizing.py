"""How many replicas the service should serve with, whatever the pool.

`scaling.targetQueueDepth` is the number of requests a replica may keep waiting (the
signal KEDA's queue scaler uses). A queue says the fleet is too small, never by how much
it is too big, so the fleet is sized from throughput: the request rate (finished
requests plus the growth of what is in flight) over the rate one replica sustains,
learned from replicas that had a queue (a replica with a queue is full), at
`target_utilization` for headroom, plus what it takes to drain the queue beyond the
target within a stable window. Throughput is linear in load where queue length is not:
sizing by queue length alone runs the fleet at the edge of saturation and oscillates
(docs/autoscaling.md). Until a full replica has been measured, the fleet grows by half
while queues exceed the target and shrinks one step per stabilization window, probing.

Around that: Knative's two windows (a stable one sizes the fleet, a short panic one
catches bursts and blocks scale-down while it lasts), the HPA's damping (tolerance band,
scale-up and scale-down stabilization windows, per-minute rate limits), and two LLM
saturation signals, KV-cache usage and the engines' request preemptions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infleet.autoscaler.spec import ScalingSpec, SloSpec

RATE_LIMIT_WINDOW_S = 60.0


@dataclass(slots=True)
class Load:
    arrivals_stable: float | None  # requests/s over the stable window (None: no counters)
    arrivals_panic: float | None  # the same over the panic window
    waiting_stable: float  # requests waiting (in replicas or at the activator), mean
    waiting_panic: float
    depth: float  # requests in flight now, waiting or running
    ready: int
    capacity: float | None  # learned requests/s of one full replica; None: not seen yet
    kv_usage: float | None  # mean over ready replicas, stable window
    preemption_ratio: float | None  # preemptions per finished request, stable window
    idle_s: float  # seconds since the service last held or received a request
    activator: bool  # something holds requests while no replica serves
    observed_s: float = float("inf")  # how long the policy has been watching


@dataclass(slots=True)
class Sizing:
    total: int
    reason: str  # CamelCase, for status.lastScalingDecision.reason and the Event
    reasons: list[str]
    panic_until: float
    recommendation: int  # before damping, kept for the stabilization windows


def _ceil(x: float) -> int:
    return math.ceil(min(x, 1e9) - 1e-9)  # bounded: maxReplicas caps it anyway


def _wanted(
    spec: ScalingSpec, load: Load, arrivals: float | None, waiting: float, current: int
) -> int:
    """Replicas for a request rate and a queue."""
    ready = max(load.ready, 1)
    excess = waiting - spec.target_queue_depth * ready  # beyond what replicas may keep
    if arrivals is not None and load.capacity:
        # Serve the arrivals and drain the excess queue within one stable window. (KEDA's
        # waiting/target would ask for a replica per `target` queued requests: a backlog
        # is not a sustained load, and that overshoots many times over.)
        drain = max(0.0, excess) / spec.stable_window_s
        return _ceil((arrivals + drain) / (spec.target_utilization * load.capacity))
    if excess > 0:  # queues, but no full replica measured yet: grow by half
        return max(current + 1, _ceil(1.5 * ready))
    if load.depth <= 0:
        return 0
    # Probe: a step past the tolerance band, so it is taken (one per stabilization window).
    return max(current - max(1, _ceil(1.5 * spec.tolerance * current)), 1)


def recommend(
    spec: ScalingSpec, slo: SloSpec, load: Load, current: int, now: float, panic_until: float
) -> tuple[int, float, str, list[str]]:
    """Undamped recommendation, the new panic deadline, the reason code and words."""
    target = spec.target_queue_depth
    stable = _wanted(spec, load, load.arrivals_stable, load.waiting_stable, current)
    burst = _wanted(spec, load, load.arrivals_panic, load.waiting_panic, current)
    per_replica = load.waiting_stable / max(load.ready, 1)
    if load.capacity and load.arrivals_stable is not None:
        words = (
            f"{load.arrivals_stable:.1f} req/s over {spec.stable_window_s:.0f}s; a full "
            f"replica serves {load.capacity:.1f} req/s, sized at "
            f"{spec.target_utilization:.0%}; {per_replica:.1f} waiting per replica "
            f"(target {target:g}): wants {stable}"
        )
    else:
        words = (
            f"{per_replica:.1f} waiting per replica (target {target:g}) over "
            f"{spec.stable_window_s:.0f}s, no full replica seen yet: wants {stable}"
        )
    reasons = [words]
    code = "QueueAboveTarget" if stable > current else "QueueBelowTarget"
    if stable == current:
        code = "QueueAtTarget"
    if burst > current and burst >= spec.panic_threshold * max(load.ready, 1):
        panic_until = now + spec.stable_window_s
        reasons.append(
            f"panic: {spec.panic_window_s:.0f}s window wants {burst}, "
            f"{burst / max(load.ready, 1):.1f}x the {load.ready} ready"
        )
    rec = stable
    if now < panic_until:
        rec = max(stable, burst, current)
        code = "PanicBurst"
        if rec > stable:
            reasons.append(f"panic mode until t={panic_until:.0f}s: no scale-down")
    if load.kv_usage is not None and load.kv_usage > spec.kv_usage_target and load.ready:
        kv_rec = _ceil(load.ready * load.kv_usage / spec.kv_usage_target)
        if kv_rec > rec:
            rec, code = kv_rec, "KVCacheSaturated"
            reasons.append(
                f"KV cache {load.kv_usage:.0%} full (target {spec.kv_usage_target:.0%}) "
                f"wants {kv_rec}"
            )
    budget, ratio = slo.request_preemption_ratio, load.preemption_ratio
    if budget is not None and ratio is not None and load.ready and ratio > budget:
        pre_rec = load.ready + max(1, _ceil(0.25 * load.ready))
        if pre_rec > rec:
            rec, code = pre_rec, "RequestPreemptionsOverBudget"
            reasons.append(
                f"engines preempt {ratio:.3f} per request (budget {budget:g}): "
                f"+25% capacity wants {pre_rec}"
            )
    return rec, panic_until, code, reasons


def size_total(
    spec: ScalingSpec,
    slo: SloSpec,
    load: Load,
    current: int,
    now: float,
    panic_until: float,
    recommendations: list[tuple[float, float]],
    totals: list[tuple[float, float]],
) -> Sizing:
    """The damped total. `recommendations` and `totals` hold earlier (time, value) pairs."""
    if spec.replicas_override is not None:
        pinned = min(max(spec.replicas_override, spec.min_replicas), spec.max_replicas)
        words = f"held at {pinned} by spec.replicas (kubectl scale)"
        if pinned != spec.replicas_override:
            words += f", clamped from {spec.replicas_override} to min/maxReplicas"
        return Sizing(pinned, "ManualOverride", [words], panic_until, pinned)
    rec, panic_until, code, reasons = recommend(spec, slo, load, current, now, panic_until)
    desired = rec
    if current and abs(rec - current) <= spec.tolerance * current:
        desired = current
    panic = now < panic_until
    # Scale-up stabilization: only what every recommendation in the window asked for
    # (a burst that triggers panic mode, and requests waiting on a fleet at zero, go
    # straight through).
    if desired > current and current and not panic:
        window = [r for t, r in recommendations if t > now - spec.scale_up_stabilization_s]
        held = max(current, min([rec, *window]))
        if held < desired:
            reasons.append(
                f"scale-up held at {int(held)} by {spec.scale_up_stabilization_s:.0f}s "
                "stabilization"
            )
            desired = int(held)
    # A fresh policy (or a restarted operator) has not seen a full window: hold.
    if desired < current and load.observed_s < spec.stable_window_s:
        reasons.append(f"no scale-down before a full {spec.stable_window_s:.0f}s window")
        desired = current
    # Scale-down stabilization: never below the highest recommendation in the window.
    if desired < current:
        window = [r for t, r in recommendations if t > now - spec.scale_down_stabilization_s]
        held = min(current, max([rec, *window]))
        if held > desired:
            reasons.append(
                f"scale-down held at {int(held)} by {spec.scale_down_stabilization_s:.0f}s "
                "stabilization"
            )
            desired = int(held)
    # Rate limits relative to the fleet over the last minute.
    recent = [v for t, v in totals if t > now - RATE_LIMIT_WINDOW_S] + [current]
    low, high = int(min(recent)), int(max(recent))
    up_limit = max(_ceil(low * spec.scale_up_factor), low + spec.scale_up_min_step)
    down_limit = high - max(1, int(high * spec.scale_down_fraction))
    if desired > up_limit:
        reasons.append(f"scale-up limited to {up_limit} this minute")
        desired = up_limit
    if desired < down_limit:
        reasons.append(f"scale-down limited to {down_limit} this minute")
        desired = down_limit
    # Bounds, and scale to zero when idle long enough with an activator in front.
    floor = max(spec.min_replicas, 1)
    if spec.scale_to_zero and load.idle_s >= spec.scale_to_zero_idle_s:
        if load.activator:
            floor = 0
            if desired == 0:
                code = "ScaledToZero"
                if current:
                    reasons.append(f"idle for {load.idle_s:.0f}s: scaling to zero")
        else:
            reasons.append("idle, but no activator holds requests at zero: keeping 1")
    if desired < floor:
        reasons.append(f"raised to minReplicas {floor}")
        desired, code = floor, "AtMinReplicas"
    if desired > spec.max_replicas:
        reasons.append(f"capped at maxReplicas {spec.max_replicas}")
        desired, code = spec.max_replicas, "AtMaxReplicas"
    if current == 0 and desired > 0 and load.depth > 0:
        code = "ActivatedFromZero"
    return Sizing(desired, code, reasons, panic_until, rec)
