"""Runs `LLMEngine` steps in a thread while the asyncio server streams.

All engine state is touched only by the engine thread: the event loop hands it requests
and aborts through a queue, and gets each step's outputs back with
`call_soon_threadsafe`. A request with n choices is n engine sequences feeding one asyncio
queue. When the consumer goes away (client disconnect, cancelled handler), the stream's
cleanup aborts whatever is unfinished, and the engine frees its blocks before its next step.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from infleet.engine.errors import QueueFull
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.messages import SamplingParams
from infleet.engine.output_processor import RequestOutput

log = logging.getLogger("infleet.engine")


@dataclass(slots=True)
class _Add:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    priority: int
    cache_salt: str
    arrival_time: float


class AsyncEngine:
    def __init__(self, engine: LLMEngine, max_queue: int):
        self.engine = engine
        self.max_queue = max_queue
        self._commands: queue.SimpleQueue[_Add | str] = queue.SimpleQueue()  # str: abort id
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="infleet-engine", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[str, asyncio.Queue[tuple[int, RequestOutput]]] = {}
        self._index: dict[str, int] = {}  # engine request id -> choice index
        self._pending = 0  # added but not yet in the scheduler's queue
        self._lock = threading.Lock()
        self._finish_times: collections.deque[float] = collections.deque(maxlen=512)

    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await asyncio.to_thread(self._thread.join)

    def num_waiting(self) -> int:
        with self._lock:
            return self.engine.scheduler.num_waiting + self._pending

    def retry_after(self, waiting: int) -> int:
        """Seconds until the queue has likely drained enough, from the recent finish rate."""
        now = time.monotonic()
        recent = [t for t in self._finish_times if now - t < 60.0]
        if len(recent) < 2:
            return 1
        rate = len(recent) / max(now - recent[0], 1e-3)
        return max(1, min(60, math.ceil(waiting / rate)))

    def generate(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: list[SamplingParams],
        *,
        priority: int = 0,
        cache_salt: str = "",
    ) -> AsyncIterator[tuple[int, RequestOutput]]:
        """Submit one request with len(params) choices; yields (choice index, delta).

        Raises InvalidRequest or QueueFull at once, before anything is queued."""
        for p in params:
            self.engine.validate(prompt_token_ids, p)
        waiting = self.num_waiting()
        if waiting >= self.max_queue:
            raise QueueFull(waiting, self.retry_after(waiting))
        stream: asyncio.Queue[tuple[int, RequestOutput]] = asyncio.Queue()
        ids = [f"{request_id}-{i}" for i in range(len(params))]
        now = time.monotonic()
        with self._lock:
            self._pending += len(ids)
        for i, (rid, p) in enumerate(zip(ids, params, strict=True)):
            self._streams[rid] = stream
            self._index[rid] = i
            self._commands.put(_Add(rid, prompt_token_ids, p, priority, cache_salt, now))
        self._wake.set()
        return self._consume(ids, stream)

    async def _consume(
        self, ids: list[str], stream: asyncio.Queue
    ) -> AsyncIterator[tuple[int, RequestOutput]]:
        unfinished = set(ids)
        try:
            while unfinished:
                index, out = await stream.get()
                if out.finished:
                    unfinished.discard(out.request_id)
                yield index, out
        finally:
            for rid in ids:
                self._streams.pop(rid, None)
                self._index.pop(rid, None)
            for rid in unfinished:
                self._commands.put(rid)
            if unfinished:
                self._wake.set()

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if stream is not None:
                stream.put_nowait((self._index[out.request_id], out))
            if out.finished:
                self._finish_times.append(time.monotonic())

    # -- engine thread ------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def _run(self) -> None:
        assert self._loop is not None
        while not self._stopping:
            try:
                outputs = self._drain_commands()
                idle = not self.engine.has_unfinished()
                if not idle:
                    outputs += self.engine.step()
            except Exception:
                # A bug, not a request's fault: end what is in flight, keep the thread.
                log.exception("engine step failed; failing its in-flight requests")
                outputs, idle = self.engine.fail_all("the engine step failed"), False
            if outputs:
                self._loop.call_soon_threadsafe(self._deliver, outputs)
            if idle:
                self.engine.record_metrics()  # aborts may have freed blocks since the last step
                self._wake.wait()
                self._wake.clear()

    def _drain_commands(self) -> list[RequestOutput]:
        outputs: list[RequestOutput] = []
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return outputs
            if isinstance(cmd, str):
                self.engine.abort(cmd)
                continue
            # Under the lock, so num_waiting() never counts a request twice.
            with self._lock:
                self._pending -= 1
                try:
                    self.engine.add_request(
                        cmd.request_id,
                        cmd.prompt_token_ids,
                        cmd.params,
                        priority=cmd.priority,
                        cache_salt=cmd.cache_salt,
                        arrival_time=cmd.arrival_time,
                    )
                except Exception as err:
                    log.exception("could not add request %s", cmd.request_id)
                    outputs.append(self.engine.rejected(cmd.request_id, str(err)))
