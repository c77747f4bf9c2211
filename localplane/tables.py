"""`meta.k8s.io/v1 Table` answers for `kubectl get`: CRD printer columns and the
column sets of the built-in types kubectl users know."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from infleet.localplane.resources import ResourceType
from infleet.localplane.store import Obj

_TOKEN = re.compile(r"\.([\w-]+)|\[(\d+|\*)\]|\[\?\(@\.([\w.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The subset of JSONPath that printer columns use: fields, [n], [*], [?(@.k=="v")]."""
    path = path.strip().strip("{}").lstrip("$")
    results, pos = [obj], 0
    for m in _TOKEN.finditer(path):
        if m.start() != pos:
            return []
        pos = m.end()
        field, index, fkey, fval = m.groups()
        nxt: list[Any] = []
        for r in results:
            if field is not None and isinstance(r, dict) and field in r:
                nxt.append(r[field])
            elif index == "*" and isinstance(r, list):
                nxt.extend(r)
            elif index is not None and index != "*" and isinstance(r, list) and int(index) < len(r):
                nxt.append(r[int(index)])
            elif fkey is not None and isinstance(r, list):
                nxt.extend(i for i in r if isinstance(i, dict) and str(_dig(i, fkey)) == fval)
        results = nxt
    return results if pos == len(path) else []


def _dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


Column = tuple[str, str, int, Callable[[Obj], Any]]  # name, type, priority, cell


def _age(o: Obj) -> Any:
    return o["metadata"].get("creationTimestamp")


def _pod_status(o: Obj) -> str:
    if o["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for cs in o.get("status", {}).get("containerStatuses") or []:
        for state in ("waiting", "terminated"):
            reason = (cs.get("state") or {}).get(state, {}).get("reason")
            if reason:
                return reason
    return o.get("status", {}).get("reason") or o.get("status", {}).get("phase", "Pending")


def _pod_ready(o: Obj) -> str:
    cs = o.get("status", {}).get("containerStatuses") or []
    total = len(o["spec"].get("containers") or [])
    return f"{sum(1 for c in cs if c.get('ready'))}/{total}"


def _node_status(o: Obj) -> str:
    ready = next(
        (c for c in o.get("status", {}).get("conditions") or [] if c["type"] == "Ready"), {}
    )
    text = "Ready" if ready.get("status") == "True" else "NotReady"
    return text + (",SchedulingDisabled" if o.get("spec", {}).get("unschedulable") else "")


def _ports(o: Obj) -> str:
    return (
        ",".join(f"{p['port']}/{p.get('protocol', 'TCP')}" for p in o["spec"].get("ports") or [])
        or "<none>"
    )


def _st(o: Obj, field: str) -> Any:
    return o.get("status", {}).get(field) or 0


def _event_object(o: Obj) -> str:
    ref = o.get("involvedObject") or o.get("regarding") or {}
    return f"{ref.get('kind', '').lower()}/{ref.get('name', '')}"


BUILTIN_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        (
            "Restarts",
            "integer",
            0,
            lambda o: sum(
                c.get("restartCount", 0) for c in o.get("status", {}).get("containerStatuses") or []
            ),
        ),
        ("Age", "date", 0, _age),
        ("IP", "string", 1, lambda o: o.get("status", {}).get("podIP") or "<none>"),
        ("Node", "string", 1, lambda o: o["spec"].get("nodeName") or "<none>"),
    ],
    ("", "nodes"): [
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, lambda o: "<none>"),
        ("Age", "date", 0, _age),
        (
            "Version",
            "string",
            0,
            lambda o: o.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""),
        ),
    ],
    ("apps", "deployments"): [
        (
            "Ready",
            "string",
            0,
            lambda o: f"{_st(o, 'readyReplicas')}/{o['spec'].get('replicas', 0)}",
        ),
        ("Up-to-date", "integer", 0, lambda o: _st(o, "updatedReplicas")),
        ("Available", "integer", 0, lambda o: _st(o, "availableReplicas")),
        ("Age", "date", 0, _age),
    ],
    ("apps", "replicasets"): [
        ("Desired", "integer", 0, lambda o: o["spec"].get("replicas", 0)),
        ("Current", "integer", 0, lambda o: _st(o, "replicas")),
        ("Ready", "integer", 0, lambda o: _st(o, "readyReplicas")),
        ("Age", "date", 0, _age),
    ],
    ("", "services"): [
        ("Type", "string", 0, lambda o: o["spec"].get("type", "ClusterIP")),
        ("Cluster-IP", "string", 0, lambda o: o["spec"].get("clusterIP", "<none>")),
        ("External-IP", "string", 0, lambda o: "<none>"),
        ("Port(s)", "string", 0, _ports),
        ("Age", "date", 0, _age),
    ],
    ("", "namespaces"): [
        ("Status", "string", 0, lambda o: o.get("status", {}).get("phase", "Active")),
        ("Age", "date", 0, _age),
    ],
    ("", "events"): [  # both APIs: core names, else the events.k8s.io ones
        (
            "Last Seen",
            "date",
            0,
            lambda o: (
                o.get("lastTimestamp")
                or o.get("deprecatedLastTimestamp")
                or o.get("eventTime")
                or _age(o)
            ),
        ),
        ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Reason", "string", 0, lambda o: o.get("reason", "")),
        ("Object", "string", 0, _event_object),
        ("Message", "string", 0, lambda o: o.get("message") or o.get("note") or ""),
    ],
    ("policy", "poddisruptionbudgets"): [
        ("Min Available", "string", 0, lambda o: o["spec"].get("minAvailable", "N/A")),
        ("Max Unavailable", "string", 0, lambda o: o["spec"].get("maxUnavailable", "N/A")),
        ("Allowed Disruptions", "integer", 0, lambda o: _st(o, "disruptionsAllowed")),
        ("Age", "date", 0, _age),
    ],
}


def _columns(rt: ResourceType) -> list[Column]:
    if rt.key in BUILTIN_COLUMNS:
        return BUILTIN_COLUMNS[rt.key]
    cols: list[Column] = []
    for pc in rt.printer_columns:
        path = pc["jsonPath"]
        cols.append(
            (
                pc["name"],
                pc.get("type", "string"),
                pc.get("priority", 0),
                lambda o, p=path: next(iter(jsonpath(o, p)), None),
            )
        )
    if not any(c[0] == "Age" for c in cols):
        cols.append(("Age", "date", 0, _age))
    return cols


def _row_object(obj: Obj, include: str) -> Any:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def table(
    rt: ResourceType, objs: list[Obj], rv: str, include: str = "Metadata", continue_token: str = ""
) -> dict[str, Any]:
    cols = _columns(rt)
    defs = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    defs += [
        {"name": n, "type": t, "format": "", "priority": p, "description": n} for n, t, p, _ in cols
    ]
    rows = [
        {
            "cells": [
                o["metadata"]["name"],
                *[_human_age(fn(o)) if t == "date" else fn(o) for _, t, _, fn in cols],
            ],
            "object": _row_object(o, include),
        }
        for o in objs
    ]
    meta: dict[str, Any] = {"resourceVersion": rv}
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": defs,
        "rows": rows,
    }


def _human_age(stamp: Any) -> Any:
    """Date cells come back humanized, as the real apiserver's table convertor does."""
    if not isinstance(stamp, str):
        return stamp
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # kopf adds micros
        if then.tzinfo is None:
            then = then.replace(tzinfo=timezone.utc)
    except ValueError:
        return stamp
    secs = max(0, int((datetime.now(timezone.utc) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= 2 * size or (unit == "m" and secs >= 120):
            return f"{secs // size}{unit}"
    return f"{secs}s"


def wants_table(accept: str) -> bool:
    return "as=Table" in accept
