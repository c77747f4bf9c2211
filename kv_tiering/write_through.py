"""Write-through to the NVMe tier: one background thread, a bounded queue, a byte rate cap.

Every block that reaches DRAM is offered here so that a crash or an OOM kill (no SIGTERM,
no chance to flush) still finds it on disk after the restart. Requests never wait for it:
when the queue is full the offer is refused and the block stays in DRAM only (counted as
dropped), and the rate cap keeps the disk free for restores. On shutdown `close()` lifts
the cap and writes what is queued until the grace period ends.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True)
class FlushReport:
    written: int  # blocks written during the flush
    abandoned: int  # blocks still queued when the grace period ended
    seconds: float


class WriteThrough(Generic[Item]):
    def __init__(self, write: Callable[[Item], int], *, max_queue: int, bytes_per_s: float) -> None:
        """`write(item)` writes one block and returns the bytes it wrote (0 if none); it
        handles its own errors."""
        if max_queue < 1 or bytes_per_s <= 0:
            raise ValueError(
                f"need max_queue >= 1 and bytes_per_s > 0, got {max_queue}, {bytes_per_s}"
            )
        self._write = write
        self.max_queue = max_queue
        self.bytes_per_s = bytes_per_s
        self._queue: deque[Item] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")
        self._busy = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="kv-nvme-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Blocks queued or being written."""
        with self._cond:
            return len(self._queue) + self._busy

    def offer(self, item: Item) -> bool:
        """Queue a block; False (nothing queued) when the queue is full or closing."""
        with self._cond:
            if self._closing or len(self._queue) >= self.max_queue:
                return False
            self._queue.append(item)
            self._cond.notify()
            return True

    def _run(self) -> None:
        next_start = time.monotonic()
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                # The cap paces writes while serving; a flush (closing) runs at full speed.
                while not self._closing and time.monotonic() < next_start:
                    self._cond.wait(next_start - time.monotonic())
                if not self._queue or time.monotonic() >= self._deadline:
                    return
                item = self._queue.popleft()
                self._busy = True
            start = time.monotonic()
            try:
                nbytes = self._write(item)
            finally:
                with self._cond:
                    self._busy = False
            self.written += nbytes > 0
            next_start = max(next_start, start) + nbytes / self.bytes_per_s

    def close(self, grace_s: float) -> FlushReport:
        """Write what is queued for at most `grace_s` seconds, then stop. Idempotent."""
        start = time.monotonic()
        before = self.written
        with self._cond:
            self._closing = True
            self._deadline = min(self._deadline, start + grace_s)
            self._cond.notify_all()
        self._thread.join(timeout=max(0.0, grace_s) + 5.0)
        with self._cond:
            abandoned = len(self._queue) + self._busy
            self._queue.clear()
        return FlushReport(self.written - before, abandoned, time.monotonic() - start)
