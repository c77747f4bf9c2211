"""The one place the policy meets the API: an InferenceServiceSpec -> a PolicySpec.

The PolicySpec holds the API's own models (no copies with their own defaults); the
simulator and the tests build theirs from the YAML a tenant writes (`spec_from`), so the
API validates every spec the policy ever sees.
"""

from __future__ import annotations

from typing import Any

from infleet.api import InferenceServiceSpec
from infleet.autoscaler.spec import PolicySpec, Tuning


def policy_spec(spec: InferenceServiceSpec, tuning: Tuning | None = None) -> PolicySpec:
    return PolicySpec(spec.scaling, spec.capacity, spec.slo, spec.replicas, tuning or Tuning())


def spec_from(
    scaling: dict[str, Any] | None = None,
    capacity: dict[str, Any] | None = None,
    slo: dict[str, Any] | None = None,
    replicas: int | None = None,
    tuning: Tuning | None = None,
) -> PolicySpec:
    """A PolicySpec from the spec fields a tenant writes (camelCase), validated by the API."""
    service = InferenceServiceSpec.model_validate(
        {
            "model": {"uri": "builtin:any"},
            "scaling": scaling or {},
            "capacity": capacity or {},
            "slo": slo or {},
            "replicas": replicas,
        }
    )
    return policy_spec(service, tuning)
