"""The service's admin key: who needs it, where the pods read it (pure; no key's value).

The bundled engine guards its admin paths (engine/server/auth.py) with the admin key
(`--admin-api-key`, read from ADMIN_KEY_ENV) whenever it has any key: the LoRA load and
unload API, and the router feed `/router/*`, which every tenant's load and cached prefixes
would otherwise leak through. So one rule: a service gets an operator-generated admin key
(the Secret `<service>-admin-key`, operator/admin_secret.py) where its engines have tenant
keys (`engine.apiKeys`, or LoRA admitting other namespaces) or load adapters through an
API the operator calls (`engine.lora.maxAdapters` with a delivery). The engines that check
it and the routers that follow their feed read it by reference, never in args or status.
It does not depend on whether the router is on, so turning the router on or off never
changes (never rolls) the engines' template.

Services from before this rule hold the key in `<service>-lora-admin`
(LEGACY_SECRET_SUFFIX); the first reconcile copies it into the new Secret, so the key
itself never changes (operator/admin_secret.py).
"""

from __future__ import annotations

from typing import Any

from infleet.api import InferenceServiceSpec
from infleet.operator.engines import EngineProfile

ADMIN_KEY = "admin-key"  # the Secret's data key
# The engine's --admin-api-key variable (engine/args.py), the router's
# (router/cli.py) and the lora-sync sidecar's.
ADMIN_KEY_ENV = "INFLEET_ADMIN_API_KEY"
LEGACY_SECRET_SUFFIX = "-lora-admin"


def admin_secret_name(service: str) -> str:
    """The admin key Secret, in the service's namespace."""
    return f"{service}-admin-key"


def legacy_admin_secret_name(service: str) -> str:
    """Where LoRA services kept the key before every keyed service had one."""
    return service + LEGACY_SECRET_SUFFIX


def needs_admin_key(spec: InferenceServiceSpec, profile: EngineProfile) -> bool:
    """Whether the operator creates the service's admin key Secret."""
    lora = spec.engine.lora
    if lora.max_adapters and profile.lora_delivery:
        return True  # the adapter controller calls the load API (engine or sidecar)
    return profile.router_feed and spec.engine.api_keys is not None


def admin_key_ref(service: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": admin_secret_name(service), "key": ADMIN_KEY}}


def admin_key_env(
    service: str, spec: InferenceServiceSpec, profile: EngineProfile
) -> list[dict[str, Any]]:
    """The admin key variable for the engines that check it and for their routers: where
    the engine kind serves the router feed and the service has the key ([] otherwise: a
    router never holds a key that opens nothing it needs)."""
    if not (profile.router_feed and needs_admin_key(spec, profile)):
        return []
    return [{"name": ADMIN_KEY_ENV, "valueFrom": admin_key_ref(service)}]
