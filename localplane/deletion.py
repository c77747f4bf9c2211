"""Deletion: preconditions, propagation finalizers, graceful termination of pods and
namespaces (deletionTimestamp + grace period), and finishing it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from infleet.localplane import errors
from infleet.localplane.resources import ResourceType
from infleet.localplane.store import Obj

if TYPE_CHECKING:
    from infleet.localplane.crud import Api


def delete(
    api: Api,
    rt: ResourceType,
    ns: str,
    name: str,
    *,
    grace: int | None = None,
    propagation: str | None = None,
    preconditions: dict | None = None,
    dry_run: bool = False,
) -> Obj:
    obj = api.get(rt, ns, name)
    meta = obj["metadata"]
    pre = preconditions or {}
    if pre.get("uid") and pre["uid"] != meta["uid"]:
        raise errors.conflict(rt.plural, rt.group, name)
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
        raise errors.conflict(rt.plural, rt.group, name)
    if dry_run:
        return obj
    finalizers = list(meta.get("finalizers") or [])
    if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
        finalizers.append("foregroundDeletion")
    if propagation == "Orphan" and "orphan" not in finalizers:
        finalizers.append("orphan")
    graceful = api.admission.grace_period(rt, obj, grace)
    if not finalizers and graceful is None:
        api.admission.on_delete(rt, obj)
        return _out(rt, api.store.remove(rt.key, meta.get("namespace", ""), name))
    if meta.get("deletionTimestamp"):
        # Already terminating: a shorter grace period may still shorten it.
        if graceful is not None and graceful < (meta.get("deletionGracePeriodSeconds") or 0):
            meta["deletionGracePeriodSeconds"] = graceful
            meta["deletionTimestamp"] = _after(graceful)
        meta["finalizers"] = finalizers
        return _out(rt, api.store.replace(rt.key, obj))
    meta["deletionTimestamp"] = _after(graceful or 0)
    meta["deletionGracePeriodSeconds"] = graceful or 0
    meta["finalizers"] = finalizers
    api.admission.on_terminate(rt, obj)
    if rt.has_generation:
        meta["generation"] = meta.get("generation", 1) + 1
    return _out(rt, api.store.replace(rt.key, obj))


def finish_delete(api: Api, rt: ResourceType, obj: Obj) -> None:
    """Remove a terminating object now (the kubelet after its pod stopped)."""
    meta = obj["metadata"]
    live = api.store.peek(rt.key, meta.get("namespace", ""), meta["name"])
    if live is not None and live["metadata"]["uid"] == meta["uid"]:
        api.admission.released.add(meta["uid"])
        if live["metadata"].get("finalizers"):
            return
        api.admission.on_delete(rt, live)
        api.store.remove(rt.key, meta.get("namespace", ""), meta["name"])


def _out(rt: ResourceType, obj: Obj) -> Obj:
    obj["apiVersion"] = rt.api_version
    return obj


def _after(seconds: int) -> str:
    at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
