"""The API process's client of the engine core (asyncio, no thread of its own).

`generate()` sends a `CoreRequest` and returns the request's stream of text deltas. Each
`CoreOutputs` from the core (one per step) goes through the `OutputProcessor`: token ids
become text, stop strings end choices (the core is told to abort them), latencies are
measured here, where tokens arrive, and the core's gauges and counters are recorded into
the same metrics registry that /metrics renders.

Supervision: when the core is gone (its process exited, its thread ended), every request
in flight ends with an error, `healthy` turns false and `gone` is set; the server then
stops and `infleet serve` exits non-zero.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from infleet.engine.errors import QueueFull
from infleet.engine.messages import (
    Abort,
    AdapterRef,
    CoreOutputs,
    CoreReady,
    CoreRequest,
    CoreStats,
    FromCore,
    SamplingParams,
    ToCore,
)
from infleet.engine.metrics import EngineMetrics
from infleet.engine.server.core_transport import OnGone, OnMessage
from infleet.engine.server.detokenizer import Decoder
from infleet.engine.server.output_processor import OutputProcessor, RequestOutput

log = logging.getLogger("infleet.engine")


class CoreGone(RuntimeError):
    """The engine core stopped: at start-up (model load failed) or while serving."""


class Transport(Protocol):
    pid: int | None

    async def start(self, on_message: OnMessage, on_gone: OnGone) -> None: ...
    def send(self, message: ToCore) -> None: ...
    async def close(self, timeout: float = ..., grace_s: float | None = ...) -> None: ...


class CoreClient:
    def __init__(self, transport: Transport, tokenizer: Decoder, max_queue: int):
        self.transport = transport
        self.tokenizer = tokenizer
        self.max_queue = max_queue
        self.ready: CoreReady | None = None
        self.metrics: EngineMetrics | None = None
        self.output: OutputProcessor | None = None
        self.gone = asyncio.Event()
        self.gone_reason = ""
        self._ready = asyncio.Event()
        self.on_evicted: Callable[[list[bytes]], None] | None = None  # the router feed
        self._streams: dict[str, asyncio.Queue[RequestOutput]] = {}
        self._sent = 0  # requests sent so far
        self.stats = CoreStats()  # the core's, as of its latest step
        self._finish_times: collections.deque[float] = collections.deque(maxlen=512)

    async def start(self) -> CoreReady:
        """Start the core and wait until its model is loaded; raises CoreGone if it dies."""
        await self.transport.start(self._on_message, self._on_gone)
        ready = asyncio.ensure_future(self._ready.wait())
        gone = asyncio.ensure_future(self.gone.wait())
        await asyncio.wait([ready, gone], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        gone.cancel()
        if self.ready is None:
            raise CoreGone(self.gone_reason or "the engine core stopped before it was ready")
        return self.ready

    async def close(self, grace_s: float | None = None) -> None:
        """Stop the core; `grace_s`: what is left of the grace period for its own
        shutdown work (writing queued KV blocks to NVMe)."""
        await self.transport.close(timeout=10.0 + (grace_s or 0.0), grace_s=grace_s)

    @property
    def healthy(self) -> bool:
        return self.ready is not None and not self.gone.is_set()

    def num_waiting(self) -> int:
        """Requests queued in the core at its latest step, plus those still on their way."""
        return self.stats.waiting + self._sent - self.stats.requests_received_total

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
        params: SamplingParams,
        *,
        priority: int = 0,
        cache_salt: str = "",
        lora: AdapterRef | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Submit one request (params.n choices); yields text deltas, `index` says whose.

        Raises QueueFull or CoreGone at once, before anything is sent."""
        if not self.healthy or self.output is None:
            raise CoreGone(self.gone_reason or "the engine core is not running")
        waiting = self.num_waiting()
        if waiting >= self.max_queue:
            raise QueueFull(waiting, self.retry_after(waiting))
        now = time.monotonic()
        stream: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._streams[request_id] = stream
        self.output.add(request_id, prompt_token_ids, params, now)
        self._sent += 1
        self.transport.send(
            CoreRequest(request_id, prompt_token_ids, params, priority, cache_salt, now, lora)
        )
        return self._consume(request_id, params.n, stream)

    async def _consume(
        self, request_id: str, n: int, stream: asyncio.Queue[RequestOutput]
    ) -> AsyncIterator[RequestOutput]:
        unfinished = set(range(n))
        try:
            while unfinished:
                out = await stream.get()
                if out.finished:
                    unfinished.discard(out.index)
                yield out
        finally:
            self._streams.pop(request_id, None)
            if unfinished and self.output is not None:
                # The consumer left early (client gone): free the core's blocks now.
                self.output.abort(request_id)
                if self.healthy:
                    self.transport.send(Abort([request_id]))

    # -- messages from the core -----------------------------------------------------------

    def _on_message(self, message: FromCore) -> None:
        if isinstance(message, CoreReady):
            self.ready = message
            self.metrics = EngineMetrics(message.model_name)
            self.output = OutputProcessor(self.tokenizer, self.metrics)
            self._ready.set()
        elif isinstance(message, CoreOutputs) and self.output is not None:
            self.stats = message.stats
            if message.evicted and self.on_evicted is not None:
                self.on_evicted(message.evicted)
            outputs, to_abort = self.output.process(message)
            for request_id, index in to_abort:
                self.transport.send(Abort([request_id], index=index))
            self._deliver(outputs)

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        for out in outputs:
            stream = self._streams.get(out.request_id)
            if stream is not None:
                stream.put_nowait(out)
            if out.finished:
                self._finish_times.append(time.monotonic())

    def _on_gone(self, reason: str) -> None:
        if self.gone.is_set():
            return
        log.error("%s: failing %d requests in flight", reason, len(self._streams))
        self.gone_reason = reason
        self.gone.set()
        if self.output is not None:
            self._deliver(self.output.fail_all(reason))
