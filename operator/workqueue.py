"""A work queue of keys in controller-runtime's shape (client-go's workqueue).

- `add(key)` queues a key once, however often it is added before a worker takes it;
- a key a worker holds is never handed to another until `done(key)`; added meanwhile, it
  is queued again at `done`, so one reconcile per key runs at a time and none is lost;
- `add_after(key, delay)` queues it later; `backoff(key)` does so with a per-key delay
  doubling on each failure, which `forget(key)` resets after a success.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_delay, self.max_delay, self._clock = base_delay, max_delay, clock
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # queued, or to queue again when its worker is done
        self._processing: set[K] = set()
        self._timers: list[tuple[float, int, K]] = []  # (due, tiebreak, key)
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}

    def add(self, key: K) -> None:
        with self._cond:
            self._add(key)

    def _add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._timers, (self._clock() + delay, next(self._seq), key))
            self._cond.notify()

    def backoff(self, key: K) -> float:
        """Queues `key` again after its next failure delay; returns that delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = min(self.max_delay, self.base_delay * 2**failures)
        self.add_after(key, delay)
        return delay

    def failing(self, key: K) -> bool:
        """Whether `key` failed last time (and waits out its backoff)."""
        with self._cond:
            return key in self._failures

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float) -> K | None:
        """The next key to process (the caller must call `done`), or None after `timeout`."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                now = self._clock()
                while self._timers and self._timers[0][0] <= now:
                    self._add(heapq.heappop(self._timers)[2])
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                wait = deadline - now
                if self._timers:
                    wait = min(wait, self._timers[0][0] - now)
                if wait <= 0:
                    return None
                self._cond.wait(wait)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)
