"""Per InferenceService: one reconcile or status refresh at a time, child events coalesced.

Reconciles (the parent's handlers, the autoscaler) and refreshes (the child watch) of one
service hold its lock, so a refresh always starts after the status write of the
reconcile before it and never races it back to an older view. Child events that arrive
while one is running are kept, newest per child, and handled together by one drainer:
under a burst of Deployment status updates a service is refreshed a few times, not
once per event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Key = tuple[str, str]  # (namespace, InferenceService name)
ChildId = tuple[str, str]  # (kind, name)
Batch = dict[ChildId, Any]  # the newest body of each child that had an event; None: deleted


class ParentQueue:
    def __init__(self) -> None:
        self._guard = threading.Lock()  # over the maps below
        self._locks: dict[Key, threading.Lock] = {}
        self._pending: dict[Key, Batch] = {}
        self._draining: set[Key] = set()
        self._known: dict[Key, Any] = {}

    def remember(self, key: Key, body: Any) -> None:
        """The service as its holder last read or wrote it (None: gone). A refresh starts
        from it instead of reading: a stale copy only costs a refused status patch (its
        resourceVersion no longer matches) and the read it would have done anyway."""
        if body is not None:
            meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
            body = {**body, "metadata": meta}
        with self._guard:
            if body is None:
                self._known.pop(key, None)
            else:
                self._known[key] = body

    def known(self, key: Key) -> Any:
        with self._guard:
            return self._known.get(key)

    def _lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextmanager
    def holding(self, key: Key) -> Iterator[None]:
        """Runs the block while no other reconcile or refresh of `key` runs."""
        with self._lock(key):
            yield

    def add(self, key: Key, child: ChildId, body: Any) -> None:
        with self._guard:
            self._pending.setdefault(key, {})[child] = body

    def drain(self, key: Key, refresh: Callable[[Batch], None]) -> None:
        """Calls `refresh` (holding the key) with everything added, until nothing is left.

        Returns at once when another thread is draining `key`: that one takes what was
        added, because a drainer stops only when it finds nothing pending."""
        with self._guard:
            if key in self._draining:
                return
            self._draining.add(key)
        try:
            while True:
                with self._guard:
                    batch = self._pending.pop(key, None)
                    if batch is None:
                        self._draining.discard(key)
                        return
                with self.holding(key):
                    refresh(batch)
        except BaseException:
            with self._guard:  # keep the failed batch for the next event's drainer
                self._pending[key] = {**batch, **self._pending.get(key, {})}
                self._draining.discard(key)
            raise

    def forget(self, key: Key) -> None:
        """After the service is deleted (its lock, unless something holds it)."""
        with self._guard:
            self._pending.pop(key, None)
            self._known.pop(key, None)
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]
