"""Which adapter names the router accepts as `model`, and for whom.

Three sources:
- the service's adapter set, the ConfigMap the operator writes (api/lora_set.py), listed
  and watched live, so a new or deleted LoRAAdapter never changes the router's pod template
  (never restarts it). Each entry names its owning tenant: a caller from another tenant
  gets the 404 the engine would give (engine/adapters/hooks.py: an adapter is its
  tenant's; admins, and every caller of a service without keys, see all of them).
- names given on the command line (`--adapter`, for a router run outside Kubernetes):
  the platform's, open to every caller.
- names an engine publishes as loaded (its /router/events feed, router/replicas.py): the
  feed names no owner, so they are open to every caller here and the engine decides.
A name the set holds is decided by the set's owner alone, whatever the other two say.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from infleet.api.lora_set import entries
from infleet.api.tenants import Tenant
from infleet.router.kube_discovery import KubeAccess, follow

log = logging.getLogger("infleet.router.adapters")


class AdapterSet:
    def __init__(self, static: Iterable[str] = (), watched: bool = False) -> None:
        self.static = frozenset(static)
        self.owners: dict[str, str] = {}  # served name -> owning tenant, from the set
        # Until the set is first listed a router would 404 adapters it is about to know:
        # it reports not ready meanwhile (proxy.py /health), so a new router pod never does.
        self.synced = not watched

    def update(self, config_maps: Iterable[dict[str, Any]]) -> None:
        """The set's ConfigMap as it is now (none: the service has no adapters yet)."""
        owners = {e.served_name: e.tenant for cm in config_maps for e in entries(cm).values()}
        if owners != self.owners:
            log.info("adapter set: %s", ", ".join(sorted(owners)) or "empty")
        self.owners, self.synced = owners, True

    def accepts(self, name: str, caller: Tenant, published: frozenset[str]) -> bool:
        owner = self.owners.get(name)
        if owner is not None:
            return caller.admin or caller.name == owner
        return name in self.static or name in published

    def visible(self, caller: Tenant, published: frozenset[str]) -> list[str]:
        """The adapters `caller` may name, for /v1/models."""
        names = self.static | published | self.owners.keys()
        return sorted(n for n in names if self.accepts(n, caller, published))


async def watch_adapter_set(
    adapters: AdapterSet, access: KubeAccess, namespace: str, name: str
) -> None:
    """Forever: keep `adapters` equal to the ConfigMap `name`. Listed and watched by a
    field selector on its name, so RBAC can grant this one object (resourceNames)."""
    base = f"{access.server}/api/v1/namespaces/{quote(namespace)}/configmaps"
    query = f"fieldSelector={quote(f'metadata.name={name}')}"
    await follow(access, base, query, adapters.update, f"adapter set {namespace}/{name}")
