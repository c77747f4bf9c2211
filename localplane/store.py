"""Versioned object storage with a watch history: the emulator's etcd.

Every write gets the next global resourceVersion and one watch event; the newest
`history` events stay replayable, and a watch from an older version gets 410 Gone,
as the real watch cache does. Objects are stored as plain dicts and never handed out
for mutation: readers get deep copies, watch listeners share read-only snapshots.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from infleet.localplane.clone import clone
from infleet.localplane.errors import ApiError

Key = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class WatchEvent:
    rv: int
    key: Key
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj  # read-only snapshot
    old: Obj | None  # the previous version, for selector transitions


Listener = Callable[[WatchEvent], None]


class Store:
    def __init__(self, history: int = 20000) -> None:
        self.rv = 1000
        self._objects: dict[Key, dict[tuple[str, str], Obj]] = {}
        self._by_uid: dict[str, tuple[Key, str, str]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=history)
        self.compacted = self.rv  # events at or below this version are gone
        self._listeners: list[Listener] = []
        self._owned: dict[str, set[tuple[Key, str, str]]] = {}  # owner uid -> dependents
        # Controllers look up "objects of a namespace" and "objects carrying label k=v"
        # on every event; scanning a whole bucket there made the plane quadratic.
        self._in_ns: dict[Key, dict[str, dict[str, Obj]]] = {}  # key -> ns -> name -> obj
        self._labeled: dict[tuple[Key, str, str, str], set[str]] = {}  # (key, ns, k, v) -> names

    # -- reads ---------------------------------------------------------------
    def get(self, key: Key, ns: str, name: str) -> Obj | None:
        obj = self._objects.get(key, {}).get((ns, name))
        return clone(obj) if obj is not None else None

    def peek(self, key: Key, ns: str, name: str) -> Obj | None:
        """The stored object itself, for read-only use by in-process controllers."""
        return self._objects.get(key, {}).get((ns, name))

    def items(self, key: Key, ns: str | None = None) -> Iterator[Obj]:
        """Read-only stored objects of a type, optionally in one namespace, name-sorted
        (list responses come out in this order, as kubectl expects)."""
        if ns is None:
            for _, obj in sorted(self._objects.get(key, {}).items()):
                yield obj
        else:
            for _, obj in sorted(self._in_ns.get(key, {}).get(ns, {}).items()):
                yield obj

    def unordered(self, key: Key, ns: str | None = None) -> list[Obj]:
        """`items` without the sort, for controllers to whom order does not matter."""
        if ns is None:
            return list(self._objects.get(key, {}).values())
        return list(self._in_ns.get(key, {}).get(ns, {}).values())

    def labeled(self, key: Key, ns: str, match: dict[str, str]) -> list[Obj]:
        """Read-only objects of a type in `ns` whose labels carry every pair of `match`
        (a matchLabels dict; an empty one matches all), in no particular order."""
        if not match:
            return self.unordered(key, ns)
        objects = self._in_ns.get(key, {}).get(ns, {})
        indexed = [(key, ns, k, v) for k, v in match.items() if isinstance(v, str)]
        names = min((self._labeled.get(e, ()) for e in indexed), key=len, default=objects.keys())
        found = []
        for name in names:
            obj = objects[name]
            if match.items() <= (obj["metadata"].get("labels") or {}).items():
                found.append(obj)
        return found

    def by_uid(self, uid: str) -> tuple[Key, Obj] | None:
        loc = self._by_uid.get(uid)
        if loc is None:
            return None
        return loc[0], self._objects[loc[0]][(loc[1], loc[2])]

    # -- writes --------------------------------------------------------------
    def insert(self, key: Key, obj: Obj) -> Obj:
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        bucket = self._objects.setdefault(key, {})
        if (ns, name) in bucket:
            raise ApiError(409, "already exists")  # callers check first; this guards races
        meta["uid"] = meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        bucket[(ns, name)] = obj
        self._in_ns.setdefault(key, {}).setdefault(ns, {})[name] = obj
        self._by_uid[meta["uid"]] = (key, ns, name)
        self._index_owners(key, None, obj)
        self._index_labels(key, None, obj)
        self._emit(WatchEvent(self.rv, key, "ADDED", obj, None))
        return clone(obj)

    def replace(self, key: Key, obj: Obj) -> Obj:
        """Store a new version; an unchanged object keeps its version and emits nothing."""
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        old = self._objects[key][(ns, name)]
        if _same(old, obj):
            return clone(old)
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self._objects[key][(ns, name)] = obj
        self._in_ns[key][ns][name] = obj
        self._index_owners(key, old, obj)
        self._index_labels(key, old, obj)
        self._emit(WatchEvent(self.rv, key, "MODIFIED", obj, old))
        return clone(obj)

    def remove(self, key: Key, ns: str, name: str) -> Obj:
        old = self._objects[key].pop((ns, name))
        in_ns = self._in_ns[key][ns]
        del in_ns[name]
        if not in_ns:
            del self._in_ns[key][ns]
        self._by_uid.pop(old["metadata"]["uid"], None)
        self._index_owners(key, old, None)
        self._index_labels(key, old, None)
        self.rv += 1
        gone = clone(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(WatchEvent(self.rv, key, "DELETED", gone, old))
        return clone(gone)

    def owned_by(self, uid: str, key: Key) -> list[Obj]:
        """Read-only objects of one type that list `uid` among their ownerReferences."""
        found = []
        for k, ns, name in self._owned.get(uid, ()):
            if k == key and (obj := self._objects.get(k, {}).get((ns, name))) is not None:
                found.append(obj)
        return sorted(found, key=lambda o: o["metadata"]["name"])

    def dependents(self, uid: str) -> list[tuple[Key, str, str]]:
        """(key, namespace, name) of every object whose ownerReferences list `uid`."""
        return sorted(self._owned.get(uid, ()))

    def owner_uids(self) -> list[str]:
        return list(self._owned)

    def _index_owners(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        def uids(obj: Obj | None) -> set[str]:
            refs = (obj or {}).get("metadata", {}).get("ownerReferences") or []
            return {r["uid"] for r in refs if "uid" in r}

        meta = (new or old or {})["metadata"]
        ref = (key, meta.get("namespace", ""), meta["name"])
        before, after = uids(old), uids(new)
        for uid in before - after:
            self._owned.get(uid, set()).discard(ref)
            if not self._owned.get(uid, True):
                del self._owned[uid]
        for uid in after - before:
            self._owned.setdefault(uid, set()).add(ref)

    def _index_labels(self, key: Key, old: Obj | None, new: Obj | None) -> None:
        before = (old or {}).get("metadata", {}).get("labels") or {}
        after = (new or {}).get("metadata", {}).get("labels") or {}
        if before == after and old is not None and new is not None:
            return  # most writes (status, spec) leave the labels alone
        meta = (new or old or {})["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        for k, v in before.items():
            if after.get(k) != v and isinstance(v, str):
                entry = (key, ns, k, v)
                names = self._labeled[entry]
                names.discard(name)
                if not names:
                    del self._labeled[entry]
        for k, v in after.items():
            if before.get(k) != v and isinstance(v, str):
                self._labeled.setdefault((key, ns, k, v), set()).add(name)

    # -- watching ------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def events_since(self, rv: int, key: Key) -> list[WatchEvent]:
        """Events of one type after `rv`; raises 410 when they were compacted away."""
        if rv < self.compacted:
            raise ApiError(
                410, f"too old resource version: {rv} ({self.compacted})", reason="Expired"
            )
        return [e for e in self._history if e.rv > rv and e.key == key]

    def _emit(self, event: WatchEvent) -> None:
        if len(self._history) == self._history.maxlen:
            self.compacted = self._history[0].rv
        self._history.append(event)
        for listener in list(self._listeners):
            listener(event)

    def compact(self) -> None:
        """Forget the whole history (tests use it to provoke 410 Gone)."""
        self._history.clear()
        self.compacted = self.rv


def _same(a: Obj, b: Obj) -> bool:
    """Equal apart from the version and managedFields timestamps."""

    def strip(o: Obj) -> Obj:
        meta = dict(o.get("metadata", {}))
        meta.pop("resourceVersion", None)
        meta["managedFields"] = [
            {k: v for k, v in m.items() if k != "time"} for m in meta.get("managedFields", [])
        ]
        return {**o, "metadata": meta}

    return strip(a) == strip(b)
