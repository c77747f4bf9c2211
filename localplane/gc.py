"""Garbage collection by ownerReferences (background, foreground, orphan) and the
namespace controller that empties a terminating namespace before it goes."""

from __future__ import annotations

import asyncio
from typing import Any

from infleet.localplane.controller import Controller
from infleet.localplane.store import WatchEvent


class GarbageCollector(Controller):
    manager = "garbage-collector"
    resync_seconds = 10.0

    def on_event(self, event: WatchEvent) -> None:
        meta = event.obj["metadata"]
        ref = (event.key, meta.get("namespace", ""), meta["name"])
        if event.type != "DELETED":
            if meta.get("ownerReferences") and event.type == "ADDED":
                self.enqueue(("check", *ref))
            fins = meta.get("finalizers") or []
            if meta.get("deletionTimestamp") and ("foregroundDeletion" in fins or "orphan" in fins):
                self.enqueue(("finalize", *ref))
        else:
            for dep in self.api.store.dependents(meta["uid"]):
                self.enqueue(("check", *dep))

    def resync_items(self) -> list[Any]:
        store = self.api.store
        return [("check", *dep) for uid in store.owner_uids() for dep in store.dependents(uid)]

    async def reconcile(self, item: Any) -> None:
        action, key, ns, name = item
        rt = self.api.registry.for_key(key)
        obj = self.api.store.peek(key, ns, name)
        if rt is None or obj is None:
            return
        if action == "check":
            refs = obj["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if self.api.store.by_uid(r["uid"]) is not None]
            if refs and not alive and not obj["metadata"].get("deletionTimestamp"):
                self.api.delete(rt, ns, name, propagation="Background")
            return
        uid = obj["metadata"]["uid"]
        fins = list(obj["metadata"].get("finalizers") or [])
        deps = [d for d in self.api.store.dependents(uid) if self.api.store.peek(*d) is not None]
        if "orphan" in fins:
            for dkey, dns, dname in deps:
                drt = self.api.registry.for_key(dkey)
                dep = self.api.store.get(dkey, dns, dname)
                dep["metadata"]["ownerReferences"] = [
                    r for r in dep["metadata"].get("ownerReferences") or [] if r["uid"] != uid
                ]
                self.api.update(drt, dns, dname, dep, self.manager)
            fins.remove("orphan")
        elif "foregroundDeletion" in fins:
            for dkey, dns, dname in deps:
                dep = self.api.store.peek(dkey, dns, dname)
                if dep is not None and not dep["metadata"].get("deletionTimestamp"):
                    self.api.delete(
                        self.api.registry.for_key(dkey), dns, dname, propagation="Foreground"
                    )
            if deps:
                asyncio.get_running_loop().call_later(0.2, self.enqueue, item)
                return
            fins.remove("foregroundDeletion")
        fresh = self.api.store.get(key, ns, name)
        fresh["metadata"]["finalizers"] = fins
        self.api.update(rt, ns, name, fresh, self.manager)


class NamespaceController(Controller):
    manager = "namespace-controller"

    def on_event(self, event: WatchEvent) -> None:
        if event.key == ("", "namespaces") and event.obj["metadata"].get("deletionTimestamp"):
            self.enqueue(event.obj["metadata"]["name"])

    async def reconcile(self, item: Any) -> None:
        ns = self.api.store.peek(("", "namespaces"), "", item)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        left = 0
        for rt in {rt.key: rt for rt in self.api.registry.all() if rt.namespaced}.values():
            for obj in list(self.api.store.items(rt.key, item)):
                left += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self.api.delete(rt, item, obj["metadata"]["name"])
        if left:
            asyncio.get_running_loop().call_later(0.2, self.enqueue, item)
            return
        self.api.finish_delete(self.api.registry.for_key(("", "namespaces")), ns)
