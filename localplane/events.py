"""core/v1 Events from the built-in components, deduplicated like the real recorder."""

from __future__ import annotations

import hashlib
from typing import Any

from infleet.localplane.crud import Api
from infleet.localplane.store import now_rfc3339


def record(
    api: Api, obj: dict[str, Any], etype: str, reason: str, message: str, component: str
) -> None:
    meta = obj["metadata"]
    ns = meta.get("namespace") or "default"
    digest = hashlib.sha1(f"{meta['uid']}/{reason}/{message}".encode()).hexdigest()[:10]
    name = f"{meta['name']}.{digest}"
    rt = api.registry.get("", "v1", "events")
    assert rt is not None
    existing = api.store.get(rt.key, ns, name)
    stamp = now_rfc3339()
    if existing is not None:
        existing["count"] = existing.get("count", 1) + 1
        existing["lastTimestamp"] = stamp
        api.update(rt, ns, name, existing, component)
        return
    api.create(
        rt,
        ns,
        {
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "kind": obj.get("kind"),
                "apiVersion": obj.get("apiVersion"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": etype,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
        },
        component,
    )
