"""Leader election on a coordination.k8s.io/v1 Lease: one replica reconciles, the others
stand by with warm caches.

Our own code rather than the kubernetes client's `leaderelection` package, which (as of
client 37) builds its LeaseLock on the global default client (not the operator's
kubeconfig, and with no request timeout, so a hung renewal outlives the lease), runs
once (a replica that loses the lease never stands again), never releases the lease on
shutdown (every rolling update would wait a full lease duration) and exits the process
on a bad setting. The semantics are client-go's:

- a candidate takes the lease when it is free, released, or unchanged for a lease
  duration by the candidate's own clock (never comparing clocks across machines);
- the leader renews every retry period; it leads only until the renew deadline (shorter
  than the lease duration) after its last successful renewal began, so it stops before
  any candidate may take over: the write fence (`fence`, called before every write)
  fails from that instant, even while a renewal request still hangs;
- on shutdown the leader releases the lease and a standby takes it at once;
- a candidate whose API server does not answer backs off (doubling the retry period up
  to a lease duration); a leader keeps renewing every retry period until its deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from kubernetes.client.exceptions import ApiException

from infleet.operator.kube import NotLeader
from infleet.operator.lease import LeaseApi, LeaseRecord, micro_time
from infleet.operator.metrics import LEADER

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    api_timeout_s: float = 10.0

    def problem(self) -> str | None:
        """Why these timings cannot keep one leader at a time, naming the flags."""
        if self.duration_s <= self.renew_deadline_s:
            return "--lease-duration must be longer than --renew-deadline"
        if self.renew_deadline_s <= 1.2 * self.retry_period_s:
            return "--renew-deadline must be longer than 1.2 x --retry-period"
        if self.retry_period_s <= 0:
            return "--retry-period must be positive"
        return None


def claim(
    record: LeaseRecord, identity: str, observed_at: float, now: float, wall: float, duration_s: int
) -> LeaseRecord | None:
    """The record that takes or keeps the lease, or None while another holder's runs.

    `observed_at` is when this replica (its monotonic clock, like `now`) first saw
    `record` as it is; the holder's own timestamps are never compared with our clock."""
    mine = record.holder == identity
    if record.holder and not mine and now < observed_at + record.duration_s:
        return None
    return LeaseRecord(
        holder=identity,
        duration_s=duration_s,
        acquired=record.acquired if mine else micro_time(wall),
        renewed=micro_time(wall),
        transitions=record.transitions + (0 if mine else 1),
        version=record.version,
    )


class Elector:
    def __init__(
        self,
        api: LeaseApi,
        identity: str,
        timing: LeaseTiming,
        on_lead: Callable[[], None],
        on_follow: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.api, self.identity, self.timing = api, identity, timing
        self._on_lead, self._on_follow, self._clock, self._wall = on_lead, on_follow, clock, wall
        self._led_until = 0.0  # monotonic; writes are fenced off from then on
        self._leader = False
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._errors = 0  # API failures in a row

    def leading(self) -> bool:
        return self._clock() < self._led_until

    def fence(self) -> None:
        if not self.leading():
            raise NotLeader(f"{self.identity} does not hold lease {self.api.name}")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = self._clock()
            try:
                held = self._try(started)
                self._errors = 0
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:
                log.warning("lease %s: %s", self.api.name, getattr(err, "reason", err))
                held, self._errors = None, self._errors + 1
            if held:
                self._led_until = started + self.timing.renew_deadline_s
                if not self._leader:
                    log.info("%s leads (lease %s)", self.identity, self.api.name)
                    self._leader = True
                    LEADER.set(1)
                    self._on_lead()
            elif self._leader and (held is False or not self.leading()):
                self._step_down("lost the lease" if held is False else "could not renew")
            stop.wait(self._pause())

    def _pause(self) -> float:
        if self._leader or not self._errors:
            return self.timing.retry_period_s
        backoff = self.timing.retry_period_s * 2 ** (self._errors - 1)
        return min(backoff, self.timing.duration_s)

    def _timeout(self, now: float) -> float:
        timeout = min(self.timing.api_timeout_s, self.timing.renew_deadline_s)
        if self._leader:  # never wait on a renewal past the moment leading ends
            timeout = min(timeout, self._led_until - now)
        return max(timeout, 0.1)

    def _try(self, now: float) -> bool | None:
        """True: holds the lease; False: another replica does; None: cannot tell yet."""
        timeout, duration = self._timeout(now), int(self.timing.duration_s)
        record = self.api.get(timeout)
        if record is None:  # no Lease yet: the first to create it leads
            vacant = LeaseRecord(holder="", duration_s=0, acquired="", renewed="", transitions=-1)
            new = claim(vacant, self.identity, now, now, self._wall(), duration)
            written = self.api.create(new, timeout) if new else None
        else:
            if record != self._observed:
                self._observed, self._observed_at = record, now
            new = claim(record, self.identity, self._observed_at, now, self._wall(), duration)
            if new is None:
                return False
            written = self.api.replace(new, timeout)
        if written is None:  # another replica wrote first: look again next period
            return None
        self._observed, self._observed_at = written, now
        return True

    def _step_down(self, why: str) -> None:
        self._led_until, self._leader = 0.0, False  # the fence fails before on_follow runs
        LEADER.set(0)
        log.warning("%s stops leading: %s", self.identity, why)
        self._on_follow()

    def release(self) -> None:
        """On shutdown: stop leading, then hand the lease over at once."""
        if not self._leader:
            return
        self._step_down("shutting down")
        wall = micro_time(self._wall())
        try:
            current = self.api.get(self.timing.api_timeout_s)
            if current is None or current.holder != self.identity:
                return
            released = LeaseRecord(
                "", 1, current.acquired, wall, current.transitions, current.version
            )
            self.api.replace(released, self.timing.api_timeout_s)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:
            log.warning("lease %s not released: %s", self.api.name, err)
