"""What the policy reads: the InferenceService's own API models, plus the policy's knobs.

One source of truth: `scaling`, `capacity` and `slo` are `infleet.api`'s pydantic models
(their defaults, bounds and rules are the CRD's), never copies of them. What the API does
not expose (windows, headroom, the capacity prior, burst memory) is `Tuning`, whose
defaults are the values chosen by `bench/tune_autoscalers.py` on the tuning scenarios
(`infleet.autoscaler.tuned`), not by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infleet.api import CapacitySpec, ScalingSpec, SloSpec
from infleet.autoscaler.tuned import TUNED


@dataclass(frozen=True, slots=True)
class CapacityPrior:
    """What one replica serves before any has been measured: prefill tokens per second
    (compute-bound, nothing decoding) and output tokens per second at a full decode batch.
    A request of P prompt and O output tokens then costs P/prefill + O/decode seconds of a
    replica. The default is Llama-3.1-8B in bf16 on an H100 SXM (docs/autoscaling.md);
    `infleet simulate --calibration` fits one to an `infleet bench` run."""

    prefill_tok_s: float = 30_000.0
    decode_tok_s: float = 11_000.0

    def __post_init__(self) -> None:
        if self.prefill_tok_s <= 0 or self.decode_tok_s <= 0:
            raise ValueError("capacity prior: token rates must be > 0")

    def requests_per_s(self, prompt_tokens: float, output_tokens: float) -> float:
        return 1.0 / (prompt_tokens / self.prefill_tok_s + output_tokens / self.decode_tok_s)


@dataclass(frozen=True, slots=True)
class Tuning:
    """The policy's knobs that are not in the API (docs/autoscaling.md has each one with a
    worked number)."""

    # Fraction of a full replica's throughput the fleet is sized for: headroom for random
    # routing and Poisson bursts.
    target_utilization: float = TUNED["infleet"]["target_utilization"]
    # Knative's windows: the stable one sizes the fleet, the panic one catches bursts.
    stable_window_s: float = 60.0
    panic_window_s: float = 10.0
    # Panic when the load projected to the moment a new replica is ready wants this many
    # times the ready replicas.
    panic_threshold: float = TUNED["infleet"]["panic_threshold"]
    # After a burst, keep its capacity this many times the gap seen between bursts
    # (bounded below by the scale-down stabilization window, above by burst_hold_max_s).
    burst_hold_gaps: float = TUNED["infleet"]["burst_hold_gaps"]
    burst_hold_max_s: float = 3600.0
    # Pod start plus model load, before this service's own pods have been timed.
    lead_time_s: float = 180.0
    # Per-minute rate limits relative to the fleet a minute ago (the HPA's policies).
    scale_up_factor: float = 2.0
    scale_up_min_step: int = 4
    scale_down_fraction: float = 0.2
    tolerance: float = 0.1  # ignore recommendations within 10% of the current total
    kv_usage_target: float = 0.85  # mean KV usage above this adds replicas
    # Blind: no replica has reported for this long -> MetricsUnavailable, and only
    # evidence from elsewhere (the service's TTFT) may scale up.
    blind_grace_s: float = 60.0
    # Capacity learning: estimates relax toward the prior with this half-life without
    # evidence, move at most this factor per decision, stay within prior / bound .. x bound.
    capacity_half_life_s: float = 6 * 3600.0
    capacity_step: float = 1.5
    capacity_bound: float = 20.0
    prior: CapacityPrior = field(default_factory=CapacityPrior)
    # Request shape assumed where engines export no token counters (TGI before 2.x).
    default_prompt_tokens: float = 1024.0
    default_output_tokens: float = 256.0
    # Spot: pending past this is a gap dedicated covers; a lost replica takes this long
    # to come back (scales the over-provisioning for the interruption rate).
    pending_timeout_s: float = 120.0
    replacement_s: float = 300.0
    # False: no dedicated cover for spot gaps and no shift off spot while interruptions
    # burn the budget (the `spot-only` baseline).
    dedicated_fallback: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.target_utilization <= 1:
            raise ValueError(f"target utilization must be in (0, 1], got {self.target_utilization}")
        if not 0 < self.panic_window_s <= self.stable_window_s:
            raise ValueError("the panic window must be > 0 and no longer than the stable window")


@dataclass(frozen=True, slots=True)
class PolicySpec:
    scaling: ScalingSpec = field(default_factory=ScalingSpec)
    capacity: CapacitySpec = field(default_factory=CapacitySpec)
    slo: SloSpec = field(default_factory=SloSpec)
    replicas: int | None = None  # spec.replicas: a `kubectl scale` pins the total
    tuning: Tuning = field(default_factory=Tuning)

    @property
    def spot_max(self) -> int:
        spot = self.capacity.spot
        if not spot.enabled:
            return 0
        return self.scaling.max_replicas if spot.max is None else spot.max

    @property
    def full_waiting(self) -> float:
        """Waiting requests that mark a replica as full (serving flat out)."""
        return max(1.0, self.scaling.target_queue_depth / 2)
