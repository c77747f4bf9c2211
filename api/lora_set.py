"""One entry of a service's adapter set, the ConfigMap `<service>-lora` (operator/lora_set.py
writes it). Three readers: each replica's lora-sync (what to load), the engine at start,
and the router (which names it accepts, and whose each is). One data key per adapter,
`<tenant namespace>.<adapter name>`; its value is this entry as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Entry:
    served_name: str  # what clients send as `model`
    url: str  # the artifact in the operator's store
    sha256: str  # hex
    tenant: str  # the owning namespace: only its callers (and admins) may use it

    def to_json(self) -> str:
        body = {"name": self.served_name, "url": self.url, "sha256": self.sha256}
        return json.dumps(body | {"tenant": self.tenant}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Entry:
        raw = json.loads(text)
        return cls(raw["name"], raw["url"], raw["sha256"], raw["tenant"])


def entries(config_map: dict[str, Any] | None) -> dict[str, Entry]:
    """Key -> entry of a live set ConfigMap (entries that do not parse are skipped)."""
    out = {}
    for key, text in ((config_map or {}).get("data") or {}).items():
        try:
            out[key] = Entry.from_json(text)
        except (ValueError, KeyError, TypeError):
            continue
    return out
