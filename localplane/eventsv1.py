"""`events.k8s.io/v1` Events are a view of the `core/v1` Events, as on a real server:
one storage, field names converted both ways."""

from __future__ import annotations

from typing import Any

from infleet.localplane.resources import ResourceType

Obj = dict[str, Any]
# (events.k8s.io/v1 field, core/v1 field)
_RENAMES = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
]
_SAME = [
    "metadata",
    "eventTime",
    "series",
    "reportingInstance",
    "action",
    "reason",
    "related",
    "type",
]


def is_view(rt: ResourceType) -> bool:
    return rt.group == "events.k8s.io"


def to_view(rt: ResourceType, core: Obj) -> Obj:
    if not is_view(rt):
        return core
    out: Obj = {"apiVersion": rt.api_version, "kind": "Event"}
    out.update({k: core[k] for k in _SAME if core.get(k) is not None})
    out.update({new: core[old] for new, old in _RENAMES if core.get(old) is not None})
    if "reportingController" not in out and (core.get("source") or {}).get("component"):
        out["reportingController"] = core["source"]["component"]
    return out


def from_view(rt: ResourceType, view: Obj) -> Obj:
    if not is_view(rt):
        return view
    out: Obj = {"apiVersion": "v1", "kind": "Event"}
    out.update({k: view[k] for k in _SAME if view.get(k) is not None})
    out.update({old: view[new] for new, old in _RENAMES if view.get(new) is not None})
    if "source" not in out and view.get("reportingController"):
        out["source"] = {"component": view["reportingController"]}
    return out
