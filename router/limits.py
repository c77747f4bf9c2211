"""Per-tenant admission: requests per second (a token bucket) and requests in flight.

Pure apart from the clock the caller passes in. A request that is turned away consumes
nothing, so a tenant hammering past its limit recovers as soon as it slows down; and
one tenant's buckets never touch another's. Limits come from spec.router (a tenant's
override, else tenantLimits); unset limits admit everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from infleet.api.router import RouterSpec, TenantLimits


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    reason: Literal["admitted", "rate", "concurrency"] = "admitted"
    retry_after: int = 0  # whole seconds, for the Retry-After header


ADMITTED = Admission(True)


@dataclass(slots=True)
class _TenantState:
    tokens: float
    stamp: float
    in_flight: int = 0


def burst_of(limits: TenantLimits) -> float:
    if limits.burst is not None:
        return float(limits.burst)
    return max(1.0, limits.requests_per_second or 1.0)


class TenantLimiter:
    def __init__(self, spec: RouterSpec) -> None:
        self.spec = spec
        self._state: dict[str, _TenantState] = {}

    def admit(self, tenant: str, now: float) -> Admission:
        """Take a slot for one request of `tenant` at time `now` (seconds), or say why not."""
        limits = self.spec.limits_for(tenant)
        state = self._state.get(tenant)
        if state is None:
            state = self._state[tenant] = _TenantState(burst_of(limits), now)
        cap = limits.max_concurrent_requests
        if cap is not None and state.in_flight >= cap:
            return Admission(False, "concurrency", 1)
        rate = limits.requests_per_second
        if rate is not None:
            burst = burst_of(limits)
            state.tokens = min(burst, state.tokens + (now - state.stamp) * rate)
            state.stamp = now
            if state.tokens < 1.0:
                wait = (1.0 - state.tokens) / rate
                return Admission(False, "rate", max(1, math.ceil(wait)))
            state.tokens -= 1.0
        state.in_flight += 1
        return ADMITTED

    def release(self, tenant: str) -> None:
        """The request admitted for `tenant` has finished."""
        state = self._state.get(tenant)
        if state is not None and state.in_flight > 0:
            state.in_flight -= 1

    def in_flight(self, tenant: str) -> int:
        state = self._state.get(tenant)
        return state.in_flight if state else 0
