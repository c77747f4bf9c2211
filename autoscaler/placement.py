"""Which pool serves the total: a dedicated baseline, spot for the rest, dedicated for gaps.

- The baseline is `capacity.dedicated.min`, raised to a fraction (`shift`) of the total
  while spot interruptions burn the SLO budget (see `next_shift`).
- Spot takes the rest up to `spot.max`; beyond it the overflow goes dedicated.
- Spot is over-provisioned by the observed interruption rate times the time a lost
  replica takes to come back, so routine interruptions never open a gap.
- Gap cover: spot replicas that should serve but do not (under an interruption notice,
  replacing a preempted pod, or pending past `Tuning.pending_timeout_s`) are covered with
  dedicated replicas in the same decision. The pending spot pods stay requested so that
  spot capacity can return.
- Make before break: a pool only shrinks as the other pool's replicas pass readiness, so
  moving load between pools (onto spot, off spot while interruptions burn the budget,
  handing back a gap's cover) never dips below the total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.view import PENDING, READY, STARTING, PodState


@dataclass(slots=True)
class Placement:
    dedicated: int
    spot: int
    spot_gap: int
    reasons: list[str]


def spot_gap(
    spot_target: int,
    pods: list[PodState],
    recent_interruptions: int,
    now: float,
    pending_timeout_s: float,
) -> tuple[int, str]:
    """Spot replicas missing from `spot_target` that will not arrive soon on their own:
    under notice, replacing preempted pods, or pending past the timeout."""
    serving = starting = young = overdue = noticed = 0
    for p in pods:
        if p.notice:
            noticed += 1
        elif p.phase == READY:
            serving += 1
        elif p.phase == STARTING:
            starting += 1
        elif p.phase == PENDING:
            if now - p.since > pending_timeout_s:
                overdue += 1
            else:
                young += 1
    replacing = min(young, recent_interruptions)
    # Pods not created yet are not a gap (the Deployment is about to make them); pods in
    # trouble are, as far as the target misses them.
    trouble = noticed + replacing + overdue
    short = max(0, spot_target - serving - starting - (young - replacing))
    gap = min(trouble, short)
    if not gap:
        return 0, ""
    parts = [
        f"{n} {what}"
        for n, what in (
            (noticed, "under interruption notice"),
            (replacing, "replacing preempted pods"),
            (overdue, f"pending over {pending_timeout_s:.0f}s"),
        )
        if n
    ]
    detail = ", ".join(parts) or "waiting for spot pods to pass readiness"
    return gap, f"spot gap {gap} ({detail}): covered with dedicated now"


def place(
    total: int,
    spec: PolicySpec,
    pods: list[PodState],
    now: float,
    shift: float,
    interruptions_per_hour: float,
    recent_interruptions: int,
    previous: tuple[int, int] | None = None,
) -> Placement:
    if total == 0:
        return Placement(0, 0, 0, ["0 replicas"])
    spot_max, tuning = spec.spot_max, spec.tuning
    dedicated_min = spec.capacity.dedicated.min
    if spot_max <= 0:
        return Placement(total, 0, 0, [f"{total} replicas: {total} dedicated (spot off)"])
    baseline = min(total, max(dedicated_min, math.ceil(shift * total - 1e-9)))
    reasons = []
    if baseline > dedicated_min:
        reasons.append(
            f"dedicated baseline raised to {baseline} ({shift:.0%} of {total}) while "
            "spot interruptions burn the SLO budget"
        )
    spot_target = min(total - baseline, spot_max)
    overflow = total - baseline - spot_target
    if overflow:
        reasons.append(f"{overflow} over spot.max {spot_max} go dedicated")
    extra = 0
    if spot_target and interruptions_per_hour > 0:
        loss = spot_target * interruptions_per_hour * tuning.replacement_s / 3600.0
        extra = min(math.ceil(loss - 1e-9), spot_max - spot_target)
        if extra:
            reasons.append(
                f"+{extra} spot for {interruptions_per_hour:.2f} interruptions per "
                f"replica-hour x {tuning.replacement_s:.0f}s to replace"
            )
    spot_pods = [p for p in pods if p.pool == "spot"]
    gap, why = 0, ""
    if tuning.dedicated_fallback:
        gap, why = spot_gap(
            spot_target, spot_pods, recent_interruptions, now, tuning.pending_timeout_s
        )
    if why:
        reasons.append(why)
    dedicated = baseline + overflow + gap
    spot = spot_target + extra
    if previous is not None:
        serving = {
            pool: sum(1 for p in pods if p.pool == pool and p.phase == READY and not p.notice)
            for pool in ("dedicated", "spot")
        }
        keep_dedicated = min(previous[0], total - serving["spot"])
        if keep_dedicated > dedicated:
            reasons.append(
                f"keeping {keep_dedicated - dedicated} dedicated until spot replicas pass readiness"
            )
            dedicated = keep_dedicated
        keep_spot = min(previous[1], total - serving["dedicated"])
        if keep_spot > spot:
            reasons.append(
                f"keeping {keep_spot - spot} spot until dedicated replicas pass readiness"
            )
            spot = keep_spot
    reasons.insert(0, f"{total} replicas: {dedicated} dedicated + {spot} spot")
    return Placement(dedicated, spot, gap, reasons)


def next_shift(
    shift: float,
    burns: tuple[float, float, float] | None,
    elapsed_s: float,
    up_per_min: float = 0.25,
    down_per_min: float = 0.05,
) -> float:
    """Move the dedicated share of the total while spot interruptions burn the budget.

    `burns` are the burn rates over 5 minutes, 1 hour and 6 hours. Burning (the hour and
    the last 5 minutes over budget: the SRE multi-window rule) moves a quarter of the
    fleet per minute to dedicated. Recovery needs the hour at half the budget and the 6
    hours under it, then returns a twentieth per minute: storms come in waves, and a fleet
    that went back to spot after one quiet hour would meet the next wave on spot (the
    half is hysteresis: an hour hovering at the budget must not flip the fleet back and
    forth).
    """
    if burns is None:
        return max(0.0, shift - down_per_min * elapsed_s / 60.0)
    short, hour, six_hours = burns
    if hour > 1.0 and short > 1.0:
        return min(1.0, shift + up_per_min * elapsed_s / 60.0)
    if hour <= 0.5 and six_hours <= 1.0:
        return max(0.0, shift - down_per_min * elapsed_s / 60.0)
    return shift
