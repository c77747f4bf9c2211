"""The apiserver's write path: preconditions, subresources, generation, finalizers,
admission, managedFields; shared by the HTTP handlers and the built-in controllers."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from typing import Any

from infleet.localplane import deletion, errors
from infleet.localplane.admission import Admission
from infleet.localplane.clone import clone
from infleet.localplane.errors import ApiError
from infleet.localplane.eventsv1 import from_view, is_view, to_view
from infleet.localplane.fieldmanager import ManagedFields
from infleet.localplane.patches import json_patch, merge_patch, strategic_merge
from infleet.localplane.resources import Registry, ResourceType
from infleet.localplane.selectors import (
    Requirement,
    matches,
    parse_field_selector,
    parse_label_selector,
)
from infleet.localplane.store import Obj, Store

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


def _desired(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Api:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.admission = Admission(self)

    # -- reads ---------------------------------------------------------------
    def get(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self.store.get(rt.key, ns if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        obj["apiVersion"] = rt.api_version  # one storage, every served version
        return to_view(rt, obj)

    def _stored(self, rt: ResourceType, ns: str, name: str) -> Obj:
        """The stored object as `rt` serves it, for read-only use: below the top level it
        is shared with the store (the write path only reads `old`; a full copy per update
        was a tenth of the plane's CPU)."""
        if is_view(rt):
            return self.get(rt, ns, name)
        obj = self.store.peek(rt.key, ns if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return {**obj, "apiVersion": rt.api_version}

    def list(
        self, rt: ResourceType, ns: str | None, label_selector: str = "", field_selector: str = ""
    ) -> tuple[list[Obj], str]:
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(field_selector, rt.plural)
        out = []
        for obj in self._candidates(rt, ns, labels):
            view = to_view(rt, obj)
            if matches(labels, obj["metadata"].get("labels")) and fields(view):
                item = clone(view)
                item["apiVersion"] = rt.api_version
                out.append(item)
        return out, str(self.store.rv)

    def _candidates(
        self, rt: ResourceType, ns: str | None, labels: list[Requirement]
    ) -> list[Obj] | Iterator[Obj]:
        """Name-sorted objects that may match `labels`: within one namespace, only those
        carrying its `k=v` terms (operators list their pods by label, and scanning every
        pod of a namespace for each list was quadratic)."""
        if not rt.namespaced or ns is None:
            return self.store.items(rt.key, ns if rt.namespaced else None)
        pairs = {k: next(iter(vs)) for k, op, vs in labels if op in ("=", "in") and len(vs) == 1}
        if not pairs:
            return self.store.items(rt.key, ns)
        found = self.store.labeled(rt.key, ns, pairs)
        return sorted(found, key=lambda o: o["metadata"]["name"])

    # -- writes --------------------------------------------------------------
    def create(
        self,
        rt: ResourceType,
        ns: str,
        body: Obj,
        manager: str,
        *,
        dry_run: bool = False,
        validation: str = "Warn",
        warnings: list[str] | None = None,
    ) -> Obj:
        if is_view(rt):
            created = self.create(
                self._core_events(),
                ns,
                from_view(rt, body),
                manager,
                dry_run=dry_run,
                validation=validation,
                warnings=warnings,
            )
            return to_view(rt, created)
        obj = clone(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + _suffix()
        if not meta.get("name"):
            raise errors.invalid(
                rt.kind,
                rt.group,
                "",
                [
                    errors.field_error(
                        "metadata.name",
                        "Required value: name or generateName is required",
                        "FieldValueRequired",
                    )
                ],
            )
        if rt.namespaced:
            if ns and meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request",
                )
            meta["namespace"] = ns or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        for field in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "managedFields",
        ):
            meta.pop(field, None)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if self.store.peek(rt.key, meta.get("namespace", ""), meta["name"]) is not None:
            raise errors.already_exists(rt.plural, rt.group, meta["name"])
        if rt.status_subresource and rt.is_custom:
            obj.pop("status", None)
        self.admission.admit(rt, obj, None, validation, warnings)
        if rt.has_generation:
            meta["generation"] = 1
        fm = ManagedFields([])
        if manager:
            fm.record_update(None, obj, manager, rt.api_version, rt.schema)
        meta["managedFields"] = fm.dump()
        if dry_run:
            return obj
        return self._out(rt, self.store.insert(rt.key, obj))

    def update(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        body: Obj,
        manager: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        validation: str = "Warn",
        warnings: list[str] | None = None,
    ) -> Obj:
        old = self._stored(rt, ns, name)
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name)
        return self._commit(
            rt, old, clone(body), manager, subresource, dry_run, validation, warnings
        )

    def patch(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        patch_type: str,
        patch: Any,
        manager: str,
        *,
        subresource: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        validation: str = "Warn",
        warnings: list[str] | None = None,
    ) -> Obj:
        if patch_type == "apply":
            return self.apply(
                rt,
                ns,
                name,
                patch,
                manager,
                force=force,
                subresource=subresource,
                dry_run=dry_run,
                validation=validation,
                warnings=warnings,
            )
        old = self.get(rt, ns, name)
        if patch_type == "merge":
            new = merge_patch(old, patch)
        elif patch_type == "json":
            new = json_patch(old, patch)
        elif rt.is_custom:
            raise ApiError(
                415,
                "strategic merge patch is not supported for custom resources; "
                "use a JSON merge patch",
            )
        else:
            new = strategic_merge(old, patch)
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name)
        return self._commit(rt, old, new, manager, subresource, dry_run, validation, warnings)

    def apply(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        config: Obj,
        manager: str,
        *,
        force: bool = False,
        subresource: str | None = None,
        dry_run: bool = False,
        validation: str = "Warn",
        warnings: list[str] | None = None,
    ) -> Obj:
        if is_view(rt):
            applied = self.apply(
                self._core_events(),
                ns,
                name,
                from_view(rt, config),
                manager,
                force=force,
                subresource=subresource,
                dry_run=dry_run,
                validation=validation,
                warnings=warnings,
            )
            return to_view(rt, applied)
        if not manager:
            raise ApiError(400, "PATCH, fieldManager: Required value: is required for apply patch")
        if not isinstance(config, dict) or config.get("kind") != rt.kind:
            raise ApiError(400, f"apply config must be a {rt.kind} object")
        config = clone(config)
        config.setdefault("metadata", {})["name"] = name
        current = self.store.get(rt.key, ns if rt.namespaced else "", name)
        if current is None:
            fm = ManagedFields([])
            obj = fm.apply({"metadata": {}}, config, manager, rt.api_version, rt.schema, force)
            obj["metadata"]["managedFields"] = []
            created = self.create(
                rt, ns, obj, "", dry_run=True, validation=validation, warnings=warnings
            )
            created["metadata"]["managedFields"] = fm.dump()
            if dry_run:
                return created
            return self._out(rt, self.store.insert(rt.key, created))
        current["apiVersion"] = rt.api_version
        fm = ManagedFields(current["metadata"].get("managedFields"))
        if subresource == "status":
            config = {
                "apiVersion": rt.api_version,
                "kind": rt.kind,
                "metadata": {"name": name},
                "status": config.get("status"),
            }
        merged = fm.apply(current, config, manager, rt.api_version, rt.schema, force)
        merged["metadata"]["managedFields"] = fm.dump()
        return self._commit(rt, current, merged, "", subresource, dry_run, validation, warnings)

    def delete(self, rt: ResourceType, ns: str, name: str, **options: Any) -> Obj:
        """Delete now, or start graceful/finalizer-held termination (see deletion.py)."""
        if is_view(rt):
            return to_view(rt, deletion.delete(self, self._core_events(), ns, name, **options))
        return deletion.delete(self, rt, ns, name, **options)

    def finish_delete(self, rt: ResourceType, obj: Obj) -> None:
        """Remove a terminating object now (the kubelet after its pod stopped)."""
        deletion.finish_delete(self, rt, obj)

    # -- shared commit path ---------------------------------------------------
    def _commit(
        self,
        rt: ResourceType,
        old: Obj,
        new: Obj,
        manager: str,
        subresource: str | None,
        dry_run: bool,
        validation: str,
        warnings: list[str] | None,
    ) -> Obj:
        if is_view(rt):
            core = self._core_events()
            done = self._commit(
                core,
                from_view(rt, old),
                from_view(rt, new),
                manager,
                subresource,
                dry_run,
                validation,
                warnings,
            )
            return to_view(rt, done)
        if subresource == "status":
            status = new.get("status")
            new = clone(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif rt.status_subresource and subresource is None:
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        if "managedFields" not in meta:
            meta["managedFields"] = clone(old_meta.get("managedFields", []))
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    meta["name"],
                    [
                        errors.field_error(
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the "
                            "object is being deleted",
                            "FieldValueForbidden",
                        )
                    ],
                )
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        self.admission.admit(rt, new, old, validation, warnings)
        if rt.has_generation and _desired(new) != _desired(old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        if manager:
            fm = ManagedFields(meta.get("managedFields"))
            fm.record_update(old, new, manager, rt.api_version, rt.schema, subresource)
            meta["managedFields"] = fm.dump()
        if dry_run:
            return new
        ns = meta.get("namespace", "")
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not (self.admission.grace_pending(rt, new))
        ):
            self.admission.on_delete(rt, new)
            return self._out(rt, self.store.remove(rt.key, ns, meta["name"]))
        return self._out(rt, self.store.replace(rt.key, new))

    def _core_events(self) -> ResourceType:
        rt = self.registry.get("", "v1", "events")
        assert rt is not None
        return rt

    def _out(self, rt: ResourceType, obj: Obj) -> Obj:
        obj["apiVersion"] = rt.api_version
        return obj
