"""The operator's own writes, until its watches show them.

A watch shows what the operator wrote a moment later (seconds, when kopf works through
a backlog of events). A reconcile in between would start from the older object and write
again: a status patch refused for its stale resourceVersion (409, a read, a retry), a
child applied again. So a reconcile starts from what was written instead, while the
cached object is provably older:

- the service: while its cached version is one that the operator's own status writes
  replaced (a chain: each write replaced the one before it); any other version means
  someone else wrote, and the cache is used (a stale guess costs a 409 and a read);
- a child: while the cached one is missing or has a lower `metadata.generation` than the
  one applied (a generation only grows: a hand edit of the spec raises it past ours, and
  then, as after an edit of metadata alone, the cache is used and the edit is seen), and
  until the watch reports that object DELETED: a child deleted before any reconcile saw
  it cached is missing from the cache for good, and only its DELETED event tells that
  apart from a watch that lags (without it, ours stood in, and the child was never made
  again). A DELETED event of an older object of the same name (another uid) is the
  deletion our write followed, and ends nothing. The event may come before the reconcile
  that applied the child records it (it writes the status first): the last uid deleted
  of each child is kept, and a write of that uid is not recorded.
"""

from __future__ import annotations

import threading
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]


def _ident(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _newer(applied: Obj, cached: Obj | None) -> bool:
    if cached is None:
        return True
    ours, theirs = applied["metadata"].get("generation"), cached["metadata"].get("generation")
    return ours is not None and theirs is not None and theirs < ours


def _same(ours: str | None, theirs: str | None) -> bool:
    """Whether two uids name one object (an unknown uid counts as the same)."""
    return ours is None or theirs is None or ours == theirs


class OwnWrites:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._services: dict[Key, tuple[frozenset[str], Obj]] = {}  # (replaced, written)
        self._children: dict[Key, dict[tuple[str, str], Obj]] = {}
        self._gone: dict[Key, dict[tuple[str, str], str]] = {}  # the last uid deleted

    def wrote(self, key: Key, replaced: str, body: Obj) -> None:
        """The service as written over version `replaced`."""
        with self._guard:
            chain, last = self._services.get(key, (frozenset(), None))
            if last is None or last["metadata"].get("resourceVersion") != replaced:
                chain = frozenset()  # not built on our previous write: a new chain
            self._services[key] = (chain | {replaced}, body)

    def applied(self, key: Key, objects: list[Obj]) -> None:
        with self._guard:
            mine, gone = self._children.setdefault(key, {}), self._gone.get(key, {})
            for obj in objects:
                uid = obj["metadata"].get("uid")
                if uid is None or gone.get(_ident(obj)) != uid:  # else deleted already
                    mine[_ident(obj)] = obj

    def deleted(self, key: Key, kind: str, meta: Obj) -> None:
        """The watch saw child `kind`/`meta.name` of `key` deleted: what we applied is gone."""
        ident, uid = (kind, meta["name"]), meta.get("uid")
        with self._guard:
            if uid is not None:
                self._gone.setdefault(key, {})[ident] = uid
            mine = self._children.get(key, {})
            applied = mine.get(ident)
            if applied is not None and _same(applied["metadata"].get("uid"), meta.get("uid")):
                del mine[ident]

    def service(self, key: Key, cached: Obj) -> Obj:
        with self._guard:
            chain, written = self._services.get(key, (frozenset(), None))
            if written is None:
                return cached
            if cached["metadata"].get("resourceVersion") in chain:
                return written  # the watch has not shown our write yet
            del self._services[key]
            return cached

    def children(self, key: Key, cached: list[Obj]) -> list[Obj]:
        with self._guard:
            mine = self._children.get(key)
            if not mine:
                return cached
            seen = {_ident(obj): obj for obj in cached}
            for ident, applied in list(mine.items()):
                if _newer(applied, seen.get(ident)):
                    seen[ident] = applied
                else:
                    del mine[ident]  # the watch has caught up
            return list(seen.values())

    def forget(self, key: Key) -> None:
        with self._guard:
            self._services.pop(key, None)
            self._children.pop(key, None)
            self._gone.pop(key, None)
