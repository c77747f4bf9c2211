"""Completion handles: what the engine polls, without blocking its step, to learn that a
transfer has finished.

A transfer is made of parts that finish on their own: a job on a thread (a
`concurrent.futures.Future`) or copies queued on a side CUDA stream (a `torch.cuda.Event`).
`done()` only asks (Future.done, Event.query); `wait()` blocks and is for tests, shutdown
and the rare caller that must have the data now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

import torch

_POLL_S = 0.0005


class Completion(Protocol):
    def done(self) -> bool: ...


class FutureDone:
    def __init__(self, future: Future) -> None:
        self.future = future

    def done(self) -> bool:
        """Raises what the job raised: a failed copy is a bug to surface, not a miss."""
        if not self.future.done():
            return False
        self.future.result()
        return True


class EventDone:
    """Copies queued on a CUDA stream up to the moment the event was recorded."""

    def __init__(self, event: torch.cuda.Event) -> None:
        self.event = event

    def done(self) -> bool:
        return self.event.query()


class Held:
    """A part not submitted yet: the caller is still deciding what to copy where."""

    def done(self) -> bool:
        return False


HELD = Held()


def all_done(parts: list[Completion]) -> bool:
    """True when every part is done; drops finished parts from the list as it goes."""
    parts[:] = [p for p in parts if not p.done()]
    return not parts


def wait_for(check: Callable[[], bool], timeout: float | None) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass; returns its last answer."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not check():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


class TransferHandle:
    """One spill or restore of `num_blocks` blocks, in the order the caller gave them.

    `ok[i]` says whether block i arrived (a restore can lose a block to a bad file); it is
    final once `done()` is true. `num_done` (restore: the leading blocks that arrived) is
    what the engine uses: prefill starts at the first block not restored.
    """

    def __init__(self, num_blocks: int, on_done: Callable[[TransferHandle], None] | None = None):
        self.ok = [False] * num_blocks
        self.tier = "dram"  # restore: the slowest tier it reads from (the metrics label)
        self.parts: list[Completion] = []
        self.started = time.perf_counter()
        self.finished: float | None = None
        self._on_done = on_done

    def done(self) -> bool:
        if self.finished is not None:
            return True
        if not all_done(self.parts):
            return False
        self.finished = time.perf_counter()
        if self._on_done is not None:
            self._on_done(self)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        return wait_for(self.done, timeout)

    @property
    def num_done(self) -> int:
        """Leading blocks that arrived (valid once done())."""
        n = 0
        while n < len(self.ok) and self.ok[n]:
            n += 1
        return n

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    def fence(self) -> None:
        """Order later device work after this transfer: on CUDA the current stream waits
        for the transfer's events (the host does not block); otherwise the host waits."""
        events = [p.event for p in self.parts if isinstance(p, EventDone)]
        if events and len(events) == len(self.parts):
            stream = torch.cuda.current_stream()
            for event in events:
                stream.wait_event(event)
            return
        self.wait()
