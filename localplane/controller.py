"""A work-queue controller: events name objects to look at, `reconcile` looks at one.

The built-in controllers run in the API server's event loop and talk to `Api` directly
(not over HTTP), but through the same write path as any client: resourceVersion
preconditions, admission, managedFields under their own manager names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable

from infleet.localplane.crud import Api
from infleet.localplane.errors import ApiError
from infleet.localplane.store import WatchEvent

log = logging.getLogger(__name__)


class Controller:
    manager = "kube-controller-manager"
    resync_seconds = 5.0

    def __init__(self, api: Api) -> None:
        self.api = api
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._pending: set[Hashable] = set()

    def enqueue(self, item: Hashable) -> None:
        if item not in self._pending:
            self._pending.add(item)
            self._queue.put_nowait(item)

    def on_event(self, event: WatchEvent) -> None:
        """Map a store event onto the items to reconcile (override)."""

    def resync_items(self) -> list[Hashable]:
        """Everything to look at again periodically (override)."""
        return []

    async def reconcile(self, item: Hashable) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        resync = asyncio.create_task(self._resync())
        try:
            while True:
                item = await self._queue.get()
                self._pending.discard(item)
                try:
                    await self.reconcile(item)
                except ApiError as err:
                    if err.code in (404, 409):  # lost a race: look again shortly
                        asyncio.get_running_loop().call_later(0.05, self.enqueue, item)
                    else:
                        log.warning("%s: %s: %s", type(self).__name__, item, err.message)
                except Exception:
                    log.exception("%s failed on %s", type(self).__name__, item)
        finally:
            resync.cancel()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for item in self.resync_items():
                self.enqueue(item)
