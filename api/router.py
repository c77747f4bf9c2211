"""spec.router: the per-service request router (prefix/adapter/load-aware), its per-tenant
limits and its hold queue for scale from zero. The router reads this same shape from its
config file, so the CRD and the router can never disagree on a field."""

from __future__ import annotations

from infleet.api.base import CrdModel, field

TENANT_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"


class TenantLimits(CrdModel):
    """Limits that apply to each tenant separately; unset means unlimited."""

    requests_per_second: float | None = field(
        None,
        gt=0,
        description="Sustained requests per second one tenant may send (a token bucket); "
        "past it the router answers 429 with Retry-After.",
    )
    burst: int | None = field(
        None,
        ge=1,
        description="Requests a tenant may send at once above its rate (the bucket's size); "
        "unset: one second's worth of requestsPerSecond (at least 1).",
    )
    max_concurrent_requests: int | None = field(
        None,
        ge=1,
        description="Requests of one tenant in flight at once; past it the router answers "
        "429 with Retry-After.",
    )


class TenantLimitOverride(TenantLimits):
    """Limits for one named tenant, replacing tenantLimits for it."""

    tenant: str = field(
        description="The tenant: its namespace name, or its name in the API keys file.",
        pattern=TENANT_PATTERN,
        max_length=253,
    )


class HoldQueue(CrdModel):
    """Requests held while no replica is ready (scale from zero, a full restart)."""

    max_requests: int = field(
        256,
        ge=0,
        le=100_000,
        description="Requests held at once per router replica; past it the router answers "
        "503 at once. 0 answers 503 whenever no replica is ready.",
    )
    timeout_seconds: float = field(
        300.0,
        gt=0,
        le=3600,
        description="How long a held request waits for a ready replica before a 503 "
        "(a cold start includes scheduling, image pull and weight loading).",
    )


class RouterSpec(CrdModel):
    """The request router in front of the replicas (docs/router.md)."""

    enabled: bool | None = field(
        None,
        description="Route through the infleet router. Unset: on when scaling.maxReplicas "
        "is above 1 or the service has LoRA adapters; off sends clients straight to the "
        "replicas' Service.",
    )
    tenant_limits: TenantLimits = field(
        default_factory=TenantLimits, description="Limits each tenant gets unless overridden."
    )
    tenants: list[TenantLimitOverride] = field(
        default_factory=list,
        description="Per-tenant limits that replace tenantLimits for the tenants named.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["tenant"],
        },
    )
    hold_queue: HoldQueue = field(
        default_factory=HoldQueue, description="Holding requests while no replica is ready."
    )

    def limits_for(self, tenant: str) -> TenantLimits:
        """The limits that apply to `tenant`: its override, else the default."""
        for override in self.tenants:
            if override.tenant == tenant:
                return override
        return self.tenant_limits
