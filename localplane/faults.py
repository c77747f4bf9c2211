"""Test hooks on the API server: a request log, and requests held unanswered.

Both are off until a test turns them on (a long-running `infleet up` logs nothing):

- `record()` starts a log of every request as it arrives (time, method, path, query,
  content type, User-Agent), so a test can count who asked for what: a standby's writes,
  the requests the RBAC audit checks against the chart.
- `hold(match)` keeps the matching requests unanswered until the hold is released:
  `hold()` is an API server that stopped answering; a narrower match stops one client
  at one step (the leader's Deployment writes). Held requests are served once released,
  as late answers (a client that timed out has closed its socket by then).

Not emulated: watch streams already open keep streaming during a hold; only requests
that arrive while it lasts go unanswered.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class Request:
    at: float  # time.time() when it arrived
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    user_agent: str

    @property
    def write(self) -> bool:
        return self.method in WRITES


@dataclass(slots=True)
class Hold:
    match: Callable[[Request], bool] | None  # None: every request
    released: threading.Event
    held: int = 0  # requests it has stopped

    def release(self) -> None:
        self.released.set()


class Faults:
    def __init__(self) -> None:
        self.log: list[Request] | None = None
        self._holds: list[Hold] = []

    def record(self) -> list[Request]:
        """Start (or keep) logging every request; returns the live log."""
        if self.log is None:
            self.log = []
        return self.log

    def hold(self, match: Callable[[Request], bool] | None = None) -> Hold:
        """Leave requests (those `match` picks) unanswered until `release()`."""
        hold = Hold(match, threading.Event())
        self._holds.append(hold)
        return hold

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.log is None and not self._holds:
            return await handler(request)
        entry = Request(
            time.time(),
            request.method,
            request.path,
            dict(request.query),
            request.content_type,
            request.headers.get("User-Agent", ""),
        )
        if self.log is not None:
            self.log.append(entry)
        self._holds = [h for h in self._holds if not h.released.is_set()]
        for hold in self._holds:
            if hold.match is None or hold.match(entry):
                hold.held += 1
                while not hold.released.is_set():  # released from a test's thread
                    await asyncio.sleep(0.05)
        return await handler(request)
