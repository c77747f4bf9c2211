"""Workers that reconcile one InferenceService key at a time, only while this replica leads.

Watch events and a periodic tick enqueue keys (operator/watches.py); WORKERS threads take
them from one WorkQueue, which never hands a key to two workers at once. A failure is
counted and retried with a per-key backoff; losing the lease mid-reconcile (NotLeader from
the write fence) leaves the key queued for the next term, here or on another replica.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from infleet.operator.kube import NotLeader
from infleet.operator.metrics import RECONCILE_ERRORS
from infleet.operator.workqueue import WorkQueue

Key = tuple[str, str]  # (namespace, InferenceService name)
WORKERS = 16
POLL_S = 0.5  # how often an idle worker looks at the stop and leadership flags

log = logging.getLogger(__name__)


class Controller:
    def __init__(
        self,
        reconcile: Callable[[Key], None],
        keys: Callable[[], Iterable[Key]],
        period_s: float,
        workers: int = WORKERS,
    ) -> None:
        self._reconcile, self._keys, self.period_s = reconcile, keys, period_s
        self.queue: WorkQueue[Key] = WorkQueue()
        self._leading = threading.Event()
        self._ready = threading.Event()  # the caches are filled (operator/cache.py)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            for i in range(workers)
        ]
        self._threads.append(threading.Thread(target=self._tick, name="tick", daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def enqueue(self, key: Key) -> None:
        self.queue.add(key)

    def caches_ready(self) -> None:
        self._ready.set()
        self._enqueue_all()

    def lead(self) -> None:
        """Start reconciling: every known service once, then as events and ticks say."""
        self._leading.set()
        self._enqueue_all()

    def follow(self) -> None:
        """Stop taking keys (a reconcile under way is stopped by the write fence)."""
        self._leading.clear()

    def _enqueue_all(self) -> None:
        for key in self._keys():
            self.queue.add(key)

    def _tick(self) -> None:
        while not self._stop.wait(self.period_s):
            if self._leading.is_set():
                for key in self._keys():
                    if not self.queue.failing(key):  # a failing key keeps its backoff
                        self.queue.add(key)

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self._leading.wait(POLL_S) or not self._ready.wait(POLL_S):
                continue
            key = self.queue.get(POLL_S)
            if key is None:
                continue
            try:
                self._reconcile(key)
            except NotLeader:
                self.queue.add(key)  # handed on to the next term (done() queues it again)
            except Exception as err:  # every failure is retried, none is lost
                RECONCILE_ERRORS.inc()
                delay = self.queue.backoff(key)
                log.warning(
                    "%s/%s: %s; retrying in %.1f s", *key, describe(err), delay, exc_info=True
                )
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)


def describe(err: Exception) -> str:
    status = getattr(err, "status", None)
    if status is not None:
        return f"API error {status} {getattr(err, 'reason', '')}".strip()
    return f"{type(err).__name__}: {err}"
