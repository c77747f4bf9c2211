"""What the adapter controller has seen: LoRAAdapters (a kopf index of their own), and,
from operator/cache.py's indices, the services, their pods and their set ConfigMaps.

Keys of the adapter controller are (adapter namespace, adapter name). Besides the live
adapters, every key found in a set is a key too, so an adapter deleted while no operator
ran is still taken out of its sets by the periodic tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from infleet.api import GROUP, VERSION
from infleet.api.lora_adapter import PLURAL
from infleet.operator.cache import PARENTS, PODS, trimmed
from infleet.operator.lora_reconcile import LoRAView
from infleet.operator.lora_set import is_set, key_of

Obj = dict[str, Any]
Key = tuple[str, str]
ADAPTERS = "lora_adapters"
CONFIG_MAPS = "service_configmaps"  # operator/cache.py's index of the services' ConfigMaps


@kopf.index(GROUP, VERSION, PLURAL)
def lora_adapters(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Key, Obj]:
    return {(namespace, name): trimmed(body, "LoRAAdapter", f"{GROUP}/{VERSION}")}


def target_of(adapter: Obj) -> Key | None:
    """(namespace, name) of the service an adapter body names; None when it names none."""
    spec, ns = adapter.get("spec") or {}, adapter["metadata"].get("namespace") or "default"
    ref = spec.get("inferenceServiceRef")
    if isinstance(ref, dict) and ref.get("name"):
        return ref.get("namespace") or ns, ref["name"]
    if spec.get("inferenceService"):
        return ns, spec["inferenceService"]
    return None


class LoRACache:
    def __init__(self) -> None:
        self._indices: Mapping[str, Any] = {}

    def fill(self, indices: Mapping[str, Any]) -> bool:
        """Takes kopf's indices from a handler's kwargs; True the first time."""
        if self._indices:
            return False
        self._indices = {name: indices[name] for name in (ADAPTERS, PARENTS, PODS, CONFIG_MAPS)}
        return True

    def _all(self, index: str) -> dict[Key, list[Obj]]:
        # list() copies in one step under the interpreter lock (see operator/cache.py).
        return {key: list(store) for key, store in list(self._indices[index].items())}

    def sets(self) -> dict[Key, Obj]:
        out = {}
        for key, maps in self._all(CONFIG_MAPS).items():
            for cm in maps:
                if is_set(cm):
                    out[key] = cm
        return out

    def keys(self) -> list[Key]:
        if not self._indices:
            return []
        found = set(self._all(ADAPTERS))
        for cm in self.sets().values():
            found |= {key_of(k) for k in cm.get("data") or {}}
        return sorted(found)

    def selector_services(self) -> list[Key]:
        """The services that admit tenant namespaces by label (engine.lora.namespaceSelector)."""
        if not self._indices:
            return []
        out = []
        for key, found in self._all(PARENTS).items():
            engine = ((found or [{}])[0].get("spec") or {}).get("engine") or {}
            if (engine.get("lora") or {}).get("namespaceSelector") is not None:
                out.append(key)
        return sorted(out)

    def adapters_of(self, service: Key) -> list[Key]:
        """The adapters aimed at `service` or in its set."""
        if not self._indices:
            return []
        keys = [k for k, found in self._all(ADAPTERS).items() if target_of(found[0]) == service]
        held = self.sets().get(service)
        return keys + [key_of(k) for k in (held or {}).get("data") or {}]

    def view(self, key: Key) -> LoRAView:
        adapters = self._all(ADAPTERS)
        pods = self._indices[PODS]
        return LoRAView(
            adapter=(adapters.get(key) or [None])[0],
            services={k: v[0] for k, v in self._all(PARENTS).items() if v},
            adapters=[v[0] for v in adapters.values() if v],
            sets=self.sets(),
            pods=lambda service: list(pods.get(service, ())),
        )
