"""The one place the policy meets the API: InferenceServiceSpec -> PolicySpec.

Everything the policy reads from a spec goes through `policy_spec`, so the policy core
stays plain dataclasses (and the simulator builds those directly).
"""

from __future__ import annotations

from infleet.api import InferenceServiceSpec
from infleet.autoscaler.spec import CapacitySpec, PolicySpec, ScalingSpec, SloSpec, SpotSpec


def policy_spec(spec: InferenceServiceSpec) -> PolicySpec:
    s, c, o = spec.scaling, spec.capacity, spec.slo
    return PolicySpec(
        scaling=ScalingSpec(
            min_replicas=s.min_replicas,
            max_replicas=s.max_replicas,
            target_queue_depth=float(s.target_queue_depth),
            scale_up_stabilization_s=float(s.scale_up_stabilization_window_seconds),
            scale_down_stabilization_s=float(s.scale_down_stabilization_window_seconds),
            scale_to_zero=s.scale_to_zero.enabled,
            scale_to_zero_idle_s=float(s.scale_to_zero.idle_seconds),
            replicas_override=spec.replicas,
        ),
        capacity=CapacitySpec(
            dedicated_min=c.dedicated.min,
            spot=SpotSpec(
                enabled=c.spot.enabled,
                max=s.max_replicas if c.spot.max is None else c.spot.max,
                preset=c.spot.preset,
            ),
        ),
        slo=SloSpec(
            ttft_p95_s=o.ttft_p95_seconds,
            itl_p95_s=o.itl_p95_seconds,
            spot_preemptions_per_replica_hour=o.spot_preemptions_per_replica_hour,
            request_preemption_ratio=o.request_preemption_ratio,
        ),
    )
