"""The activator: hold requests while no replica is ready, release them when one is.

With zero ready replicas (scaled to zero, all restarting, all draining) a request waits
here instead of failing: at most `holdQueue.maxRequests` at once, each for at most
`holdQueue.timeoutSeconds`; past either bound it gets a 503. The number held is exported
(`infleet:router_held_requests`): it is the demand the autoscaler sees while there is no
replica whose queue it could read.
"""

from __future__ import annotations

import asyncio
import contextlib

from infleet.api.router import HoldQueue
from infleet.router import errors
from infleet.router.metrics import RouterMetrics
from infleet.router.replicas import ReplicaSet

POLL_SECONDS = 0.25  # a refused replica's suspension ends with no event to wake on


class Activator:
    def __init__(self, replicas: ReplicaSet, queue: HoldQueue, metrics: RouterMetrics) -> None:
        self.replicas, self.queue, self.metrics = replicas, queue, metrics
        self.held = 0

    async def wait_for_replica(self, deadline: float) -> None:
        """Return once some replica is usable; raise a 503 `RouterError` past the bounds.

        `deadline` (loop time) caps the wait, so a request retried after refusals waits
        `timeoutSeconds` in all, not per attempt."""
        loop = asyncio.get_running_loop()
        if self.replicas.ready_count(loop.time()):
            return
        if self.held >= self.queue.max_requests:
            self.metrics.hold_outcomes.labels("full").inc()
            raise errors.no_replica(
                f"no replica is ready and {self.held} requests are already held "
                f"(holdQueue.maxRequests {self.queue.max_requests})",
                retry_after=5,
            )
        self.held += 1
        self.metrics.held.set(self.held)
        try:
            while not self.replicas.ready_count(loop.time()):
                left = deadline - loop.time()
                if left <= 0:
                    self.metrics.hold_outcomes.labels("timeout").inc()
                    raise errors.no_replica(
                        f"no replica became ready within {self.queue.timeout_seconds:g}s "
                        "(holdQueue.timeoutSeconds)",
                        retry_after=5,
                    )
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(self.replicas.changed.wait(), min(left, POLL_SECONDS))
            self.metrics.hold_outcomes.labels("released").inc()
        finally:
            self.held -= 1
            self.metrics.held.set(self.held)
