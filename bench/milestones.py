"""Per-object times of InferenceServices, from one watch in a background thread.

Every time is time.monotonic() in this process: `sent` is stamped by the driver just
before it sends a create or spec patch; the others when the watch delivers the first
version of the object that shows the milestone for that generation.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client, watch

Mark = dict[tuple[str, int], float]  # (name, generation) -> monotonic seconds


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


class Milestones:
    def __init__(self, api: client.ApiClient, group: str, version: str, plural: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._what = (group, version, plural)
        self.sent: Mark = {}
        self.reconciled: Mark = {}
        self.ready: Mark = {}
        self.settled: Mark = {}
        self.events = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None

    def start(self) -> None:
        listing = self._custom.list_cluster_custom_object(*self._what)
        rv = listing["metadata"]["resourceVersion"]
        threading.Thread(target=self._run, args=(rv,), daemon=True).start()

    def _run(self, resource_version: str) -> None:
        try:
            stream = watch.Watch().stream(
                self._custom.list_cluster_custom_object,
                *self._what,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
            )
            for event in stream:
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._observe(event["object"], time.monotonic())
        except BaseException as err:  # surfaced by wait()
            with self._cond:
                self._error = err
                self._cond.notify_all()

    def _observe(self, obj: dict[str, Any], now: float) -> None:
        name, generation = obj["metadata"]["name"], obj["metadata"].get("generation", 1)
        key, status = (name, generation), obj.get("status") or {}
        with self._cond:
            self.events += 1
            if status.get("observedGeneration") != generation:
                return
            self.reconciled.setdefault(key, now)
            ready, progressing = _condition(status, "Ready"), _condition(status, "Progressing")
            if ready.get("status") == "True" and ready.get("observedGeneration") == generation:
                self.ready.setdefault(key, now)
                if (progressing.get("status"), progressing.get("reason")) == (
                    "False",
                    "RolloutComplete",
                ) and progressing.get("observedGeneration") == generation:
                    self.settled.setdefault(key, now)
                    self._cond.notify_all()

    def mark_sent(self, name: str, generation: int) -> None:
        with self._cond:
            self.sent[(name, generation)] = time.monotonic()

    def wait_settled(self, names: list[str], generation: int, timeout: float) -> list[str]:
        """Waits until every name has settled at `generation`; returns those that did not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._error is not None:
                    raise RuntimeError(f"watch failed: {self._error!r}") from self._error
                missing = [n for n in names if (n, generation) not in self.settled]
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self._cond.wait(min(left, 1.0))
