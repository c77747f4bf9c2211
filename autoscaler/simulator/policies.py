"""The policies a simulation can run: ours, and the baselines it is measured against.

`infleet`, `infleet-dedicated` and `spot-only` call `infleet.autoscaler.policy.decide`,
the function the operator runs. The baselines reimplement each autoscaler's documented
algorithm on the signal it is named after, with the parameter each exposes tuned the same
way as ours (`infleet.autoscaler.tuned`, `bench/tune_autoscalers.py`):

- `hpa-utilization`: the HPA on DCGM GPU utilization (a GPU decoding anything reads
  ~100% busy): the signal a GPU fleet reaches for first.
- `hpa-concurrency`: the HPA on per-pod concurrency (running + waiting requests).
- `keda-queue`: KEDA's Prometheus scaler on the engines' queue (`num_requests_waiting`
  summed): threshold, activation threshold, cooldown as KEDA defines them.
- `knative-kpa`: Knative's KPA on concurrency: stable and panic windows, target
  concurrency at 70% utilization, panic threshold 200%.
- `static-peak`: dedicated replicas for the scenario's peak: an oracle (it knows the
  future peak), the cost reference in every table, not a competitor.

Every baseline runs dedicated replicas only; `infleet-dedicated` is our policy with spot
off, so the sizing gain is reported apart from the spot price.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

from infleet.api import CapacitySpec
from infleet.autoscaler.policy import Decision, PolicyState, decide
from infleet.autoscaler.spec import PolicySpec
from infleet.autoscaler.tuned import TUNED
from infleet.autoscaler.view import Observation
from infleet.autoscaler.windows import Window

POLICY_NAMES = (
    "static-peak",
    "hpa-utilization",
    "hpa-concurrency",
    "keda-queue",
    "knative-kpa",
    "spot-only",
    "infleet-dedicated",
    "infleet",
)
ORACLES = ("static-peak",)
HPA_TOLERANCE = 0.1


class SimPolicy(Protocol):
    period_s: float

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        """(dedicated, spot) replicas for the pool Deployments."""
        ...


class StaticPolicy:
    def __init__(self, replicas: int) -> None:
        self.replicas, self.period_s = replicas, 60.0

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        return self.replicas, 0


class HpaPolicy:
    """The HPA's algorithm (autoscaling/v2, default behaviour): desired =
    ceil(ready x average metric / target) outside a 10% tolerance; scale-up by at most
    max(100%, 4 pods) per 15 s period; scale-down to the highest recommendation of the
    last 300 s. A ready pod without metrics counts as 0 when scaling up and as the target
    when scaling down, as the HPA does."""

    def __init__(
        self,
        metric: Callable[[Observation, float], list[float]],
        target: float,
        min_replicas: int,
        max_replicas: int,
        period_s: float = 15.0,
        stabilization_s: float = 300.0,
    ) -> None:
        self.metric, self.target = metric, target
        self.min, self.max, self.period_s = min_replicas, max_replicas, period_s
        self.current: int | None = None  # the Deployment's replicas, once seen
        self.recommendations = Window(stabilization_s)

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        ready = obs.ready()
        if self.current is None:
            self.current = max(self.min, len(obs.pods))
        rec = self.current
        values = self.metric(obs, utilization)
        if ready and values:
            missing = max(0, ready - len(values))
            ratio = sum(values) / len(values) / self.target
            if abs(ratio - 1.0) > HPA_TOLERANCE:
                # Missing pods: 0 when that would scale up, the target when down; if that
                # reverses the direction or lands within the tolerance, no change.
                fill = 0.0 if ratio > 1.0 else self.target
                filled = (sum(values) + missing * fill) / ready / self.target
                same_way = (filled > 1.0) == (ratio > 1.0)
                if same_way and abs(filled - 1.0) > HPA_TOLERANCE:
                    rec = math.ceil(ready * filled - 1e-9)
        now = obs.now
        self.recommendations.add(now, rec)
        desired = rec
        if rec < self.current:
            desired = min(self.current, int(max(self.recommendations.values(now, 1e12))))
        desired = min(desired, max(2 * self.current, self.current + 4))
        self.current = max(self.min, min(self.max, desired))
        return self.current, 0


class KedaPolicy(HpaPolicy):
    """KEDA: an HPA on an external metric (the queue summed over the service) with
    AverageValue `threshold`, so desired = ceil(queue / threshold); at or below
    `activation_threshold` for `cooldown_s` the ScaledObject deactivates and goes to
    minReplicas (zero only when that is 0)."""

    def __init__(self, threshold: float, activation: float, cooldown_s: float, lo: int, hi: int):
        super().__init__(self._spread, threshold, lo, hi, period_s=15.0)
        self.activation, self.cooldown_s = activation, cooldown_s
        self.active_at: float | None = None

    @staticmethod
    def _spread(obs: Observation, utilization: float) -> list[float]:
        # One sum, spread over the ready pods: the HPA's ready x average / target is then
        # sum / target, as for an external metric.
        ready = max(obs.ready(), 1)
        return [sum(r.waiting for r in obs.replicas) / ready] * ready if obs.replicas else []

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        queue = sum(r.waiting for r in obs.replicas)
        if queue > self.activation or self.active_at is None:
            self.active_at = obs.now
        if self.min == 0 and obs.now - self.active_at >= self.cooldown_s:
            self.current = 0
            return 0, 0
        if self.current == 0:
            self.current = 1  # activated: KEDA scales 0 -> 1, the HPA takes it from there
        return super().decide(obs, utilization)


class KpaPolicy:
    """Knative's KPA (its documented defaults): every 2 s, the average concurrency over a
    60 s stable and a 6 s panic window, desired = ceil(concurrency / (target x 0.7)),
    bounded per tick by max scale-up rate 1000 and max scale-down rate 2; panic when the
    panic window wants twice the ready pods, and while in panic (until a stable window
    passes without that) never scale down."""

    def __init__(self, target: float, lo: int, hi: int, utilization: float = 0.7) -> None:
        self.target, self.lo, self.hi, self.utilization = target, lo, hi, utilization
        self.stable_s, self.panic_s, self.period_s = 60.0, 6.0, 2.0
        self.samples = Window(self.stable_s)
        self.panic_since: float | None = None
        self.panic_pods = 0

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        now = obs.now
        concurrency = sum(r.waiting + r.running for r in obs.replicas)
        self.samples.add(now, concurrency + (obs.activator_waiting or 0.0))
        ready = max(obs.ready(), 1)
        per_pod = self.target * self.utilization
        stable = math.ceil((self.samples.mean(now, self.stable_s) or 0.0) / per_pod - 1e-9)
        panic = math.ceil((self.samples.mean(now, self.panic_s) or 0.0) / per_pod - 1e-9)
        up, down = math.ceil(1000.0 * ready), math.floor(ready / 2.0)
        stable, panic = min(max(stable, down), up), min(max(panic, down), up)
        if panic / ready >= 2.0:
            self.panic_since = now
        elif self.panic_since is not None and now - self.panic_since >= self.stable_s:
            self.panic_since, self.panic_pods = None, 0
        desired = stable
        if self.panic_since is not None:
            desired = max(panic, self.panic_pods)
            self.panic_pods = desired
        return min(max(desired, self.lo), self.hi), 0


class InfleetPolicy:
    """Our policy, exactly as the operator runs it."""

    def __init__(self, spec: PolicySpec, period_s: float = 10.0, spot_only: bool = False):
        self.spec, self.period_s, self.spot_only = spec, period_s, spot_only
        self.state = PolicyState()
        self.last: Decision | None = None

    def decide(self, obs: Observation, utilization: float) -> tuple[int, int]:
        self.last = decide(self.spec, obs, self.state)
        self.state = self.last.state
        if self.spot_only:
            return 0, self.last.spot
        return self.last.dedicated, self.last.spot


def _with_capacity(spec: PolicySpec, capacity: dict, **tuning) -> PolicySpec:
    return dataclasses.replace(
        spec,
        capacity=CapacitySpec.model_validate(capacity),
        tuning=dataclasses.replace(spec.tuning, **tuning),
    )


def _concurrency(obs: Observation, utilization: float) -> list[float]:
    return [r.running + r.waiting for r in obs.replicas]


def make_policy(
    name: str, spec: PolicySpec, peak_replicas: int, tuned: dict | None = None
) -> SimPolicy:
    """`tuned` overrides the committed parameters (the tuning command's grid)."""
    params = {**TUNED.get(name, {}), **(tuned or {})}
    lo, hi = spec.scaling.min_replicas or 1, spec.scaling.max_replicas
    if name == "static-peak":
        return StaticPolicy(peak_replicas)
    if name == "hpa-utilization":
        target = params.get("target", 0.7)
        return HpaPolicy(lambda obs, util: [util] * len(obs.replicas), target, lo, hi)
    if name == "hpa-concurrency":
        return HpaPolicy(_concurrency, params.get("target", 32.0), lo, hi)
    if name == "keda-queue":
        threshold = params.get("threshold", float(spec.scaling.target_queue_depth))
        activation = params.get("activation_threshold", 0.0)
        return KedaPolicy(threshold, activation, 300.0, spec.scaling.min_replicas, hi)
    if name == "knative-kpa":
        return KpaPolicy(params.get("target", 32.0), lo, hi)
    ours = {k: v for k, v in params.items() if k in TUNED["infleet"]}
    if name == "infleet":
        return InfleetPolicy(_with_capacity(spec, spec.capacity.model_dump(), **ours))
    if name == "infleet-dedicated":
        dedicated = {"dedicated": {"min": spec.capacity.dedicated.min}, "spot": {"enabled": False}}
        return InfleetPolicy(_with_capacity(spec, dedicated, **ours))
    if name == "spot-only":
        # Everything on spot, over-provisioned by the interruption rate, no fallback.
        spot_only = {"dedicated": {"min": 0}, "spot": {"enabled": True, "max": hi}}
        return InfleetPolicy(
            _with_capacity(spec, spot_only, dedicated_fallback=False, **ours), spot_only=True
        )
    raise ValueError(f"--policy {name!r} is not one of: {', '.join(POLICY_NAMES)}")
