"""The `scale` subresource: an `autoscaling/v1 Scale` view onto a replicas path."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from infleet.localplane.crud import PATCH_TYPES, Api
from infleet.localplane.errors import ApiError
from infleet.localplane.patches import json_patch, merge_patch
from infleet.localplane.resources import ResourceType
from infleet.localplane.tables import jsonpath


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.lstrip(".").split(".")
    for p in parts[:-1]:
        obj = obj.setdefault(p, {})
    obj[parts[-1]] = value


def _selector_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # a LabelSelector object (Deployments)
        return ",".join(f"{k}={v}" for k, v in (value.get("matchLabels") or {}).items())
    return ""


def scale_of(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    assert rt.scale is not None
    spec = next(iter(jsonpath(obj, rt.scale.spec_replicas)), 0)
    status = next(iter(jsonpath(obj, rt.scale.status_replicas)), 0)
    selector = ""
    if rt.scale.label_selector:
        selector = _selector_string(next(iter(jsonpath(obj, rt.scale.label_selector)), ""))
    if not selector and not rt.is_custom:
        selector = _selector_string(obj.get("spec", {}).get("selector"))
    meta = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec},
        "status": {"replicas": status, "selector": selector},
    }


async def scale_request(
    api: Api, request: web.Request, rt: ResourceType, ns: str, name: str, manager: str
) -> dict[str, Any]:
    assert rt.scale is not None
    obj = api.get(rt, ns, name)
    current = scale_of(rt, obj)
    if request.method == "GET":
        return current
    body = json.loads(await request.read() or b"{}")
    if request.method == "PUT":
        wanted = body
    elif request.method == "PATCH":
        kind = PATCH_TYPES.get(request.headers.get("Content-Type", "").split(";")[0])
        wanted = json_patch(current, body) if kind == "json" else merge_patch(current, body)
    else:
        raise ApiError(405, f"{request.method} is not supported on scale")
    rv = (wanted.get("metadata") or {}).get("resourceVersion")
    replicas = (wanted.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ApiError(
            422,
            f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
            f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
        )
    _set_path(obj, rt.scale.spec_replicas, replicas)
    if rv:
        obj["metadata"]["resourceVersion"] = rv
    updated = api.update(rt, ns, name, obj, manager, subresource=None)
    return scale_of(rt, updated)
