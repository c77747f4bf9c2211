"""What one router process is configured with (the CLI builds it; tests build it directly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from infleet.api.router import RouterSpec
from infleet.router.picker import Weights

DEFAULT_MAX_BODY_BYTES = 32 << 20  # the bundled engine's own limit


@dataclass(slots=True)
class RouterConfig:
    model: str  # the base model name clients send
    # Adapter names any caller may send as `model` (--adapter, outside Kubernetes); on
    # Kubernetes the watched adapter set adds to them (router/adapter_set.py).
    adapters: frozenset[str] = frozenset()
    # The service's adapter set ConfigMap, watched (cli.py); /health waits for its first list.
    adapter_set: str | None = None
    spec: RouterSpec = field(default_factory=RouterSpec)  # limits and hold queue
    keys_file: Path | None = None  # tenants' API keys (api/tenants.py); None: one tenant
    admin_key: str | None = None  # sent to the engines' /router/events when they need one
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_attempts: int = 4  # replicas tried per request (refusals before any token)
    connect_timeout: float = 5.0
    weights: Weights = field(default_factory=Weights)
