"""What this replica publishes for the router (docs/router.md, the wire format in
`infleet.api.router_wire`): `GET /router/state` (a snapshot) and `GET /router/events`
(server-sent events: a snapshot, then `load`, `stored`, `evicted`, `adapters` and
`draining`).

The adapters it lists are those loaded now (engine/adapters/, `--enable-lora`): a router
sends an adapter's requests only to replicas that list it, so a replica still loading one
(a scale-out, a new LoRAAdapter) is never asked for it while another has it.

The engine never computes prefix keys: the router sends a request's keys in the
`x-infleet-prefix-keys` header. Once the request's first token is out its prompt is in
the KV cache, and the keys are `stored`, each tied to the block it lies in (key i of n in
prompt block ceil((i+1)·B/n)-1 of the prompt's B full blocks). When the block manager
evicts a block (to reuse it), the keys tied to it are `evicted`.

The block manager lives in the engine core's process: each step's evictions come back
with that step's outputs (`CoreOutputs.evicted`), in step order, on the event loop. A
request's first token can be consumed after a later step already evicted one of its
blocks, so `stored` leaves out a block evicted since the request was sent: what it
publishes is never more than the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from infleet.api import router_wire as wire
from infleet.engine.adapters.routes import ADAPTERS
from infleet.engine.core.block_manager import block_hash
from infleet.engine.server.core_client import CoreClient

log = logging.getLogger("infleet.engine.router_feed")
LOAD_PERIOD_S = 0.1  # a `load` event at most this often while it changes...
LOAD_HEARTBEAT_S = 1.0  # ...and at least this often: a router trusts load for 5 s only
SUBSCRIBER_BACKLOG = 4096  # events a slow follower may lag; past it, it reconnects
MAX_SNAPSHOT_KEYS = 65536  # roots first; a router keeps fewer anyway
MAX_HEADER_KEYS = 256  # what the router sends at most
EVICTIONS_REMEMBERED = 1 << 16  # evicted blocks kept to check requests still in flight


def parse_keys(header: str | None) -> list[str]:
    """The header's keys, in chain order; a malformed header counts as none (the
    request is served all the same, only not published)."""
    if not header:
        return []
    keys = [k.strip() for k in header.split(",")[:MAX_HEADER_KEYS]]
    if all(len(k) == 16 and all(c in "0123456789abcdef" for c in k) for k in keys):
        return keys
    return []


def key_blocks(num_keys: int, num_blocks: int) -> list[int]:
    """The prompt block each key lies in: key i of n in block ceil((i+1)·B/n)-1."""
    return [-(-(i + 1) * num_blocks // num_keys) - 1 for i in range(num_keys)]


def prompt_block_hashes(token_ids: list[int], salt: str, block_size: int) -> list[bytes]:
    """The engine's chained hashes of the prompt's full blocks (block_manager.py)."""
    hashes: list[bytes] = []
    for i in range(len(token_ids) // block_size):
        parent = hashes[-1] if hashes else b""
        hashes.append(block_hash(parent, salt, token_ids[i * block_size : (i + 1) * block_size]))
    return hashes


class RouterFeed:
    def __init__(
        self,
        core: CoreClient,
        model_name: str,
        draining: Any,
        adapters: Callable[[], list[str]] = list,
    ) -> None:
        self.core = core
        self.model_name = model_name
        self._draining = draining  # () -> bool: the server's drain flag
        self._adapters = adapters  # () -> the names of the adapters loaded now, sorted
        self._adapters_sent: list[str] | None = None
        self.epoch = uuid.uuid4().hex
        self.seq = 0
        self.keys: OrderedDict[str, bytes] = OrderedDict()  # key -> its block, chain order
        self.by_block: dict[bytes, list[str]] = {}
        self.subscribers: set[asyncio.Queue[wire.Event | None]] = set()
        self._load: tuple[int, int, float] | None = None
        self._draining_sent = False
        self._task: asyncio.Task[None] | None = None
        # Evictions numbered in order, the latest per block: a request sent at eviction
        # number k publishes none of its blocks evicted after k.
        self._evictions = 0
        self._evicted_at: OrderedDict[bytes, int] = OrderedDict()

    # -- wiring ---------------------------------------------------------------------

    async def start(self, _: web.Application) -> None:
        self.core.on_evicted = self._on_evicted
        self._task = asyncio.create_task(self._watch_load())

    async def stop(self, _: web.Application) -> None:
        self.core.on_evicted = None
        self._send_draining()  # a drain shorter than one load period still says so
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in self.subscribers:
            queue.put_nowait(None)

    def _on_evicted(self, blocks: list[bytes]) -> None:
        for block in blocks:
            self._evictions += 1
            self._evicted_at[block] = self._evictions
            self._evicted_at.move_to_end(block)
            if len(self._evicted_at) > EVICTIONS_REMEMBERED:
                self._evicted_at.popitem(last=False)
            self._evicted(block)

    # -- state ----------------------------------------------------------------------

    def _load_now(self) -> tuple[int, int, float]:
        stats = self.core.stats
        usage = min(1.0, max(0.0, stats.kv_usage))
        return self.core.num_waiting(), stats.running, round(usage, 4)

    def snapshot(self) -> wire.Snapshot:
        waiting, running, usage = self._load_now()
        ready = self.core.ready
        capacity = ready.num_blocks * ready.block_size if ready is not None else 0
        return wire.Snapshot(
            seq=self.seq,
            epoch=self.epoch,
            model=self.model_name,
            waiting=waiting,
            running=running,
            kv_usage=usage,
            kv_capacity_tokens=capacity,
            draining=self._draining(),
            adapters=self._adapters(),
            keys=list(self.keys)[:MAX_SNAPSHOT_KEYS],
        )

    def _publish(self, make: Any, **fields: Any) -> None:
        self.seq += 1
        event = make(seq=self.seq, **fields)
        for queue in list(self.subscribers):
            if queue.qsize() >= SUBSCRIBER_BACKLOG:  # too far behind: it resyncs
                self.subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def stored(self, token_ids: list[int], salt: str, keys: list[str], sent_at: int) -> None:
        """A request's prompt is cached: its keys, tied to their blocks. `sent_at`: the
        eviction count when it was sent (a block evicted since is not published)."""
        ready = self.core.ready
        if ready is None or not ready.prefix_caching:
            return
        blocks = prompt_block_hashes(token_ids, salt, ready.block_size)
        if not blocks:
            return
        new = []
        for key, index in zip(keys, key_blocks(len(keys), len(blocks)), strict=True):
            block = blocks[index]
            if key in self.keys or self._evicted_at.get(block, 0) > sent_at:
                continue
            self.keys[key] = block
            self.by_block.setdefault(block, []).append(key)
            new.append(key)
        if new:
            self._publish(wire.Stored, keys=new)

    def _evicted(self, block: bytes) -> None:
        keys = self.by_block.pop(block, [])
        for key in keys:
            self.keys.pop(key, None)
        if keys:
            self._publish(wire.Evicted, keys=keys)

    async def _watch_load(self) -> None:
        loop, sent_at = asyncio.get_running_loop(), 0.0
        while True:
            await asyncio.sleep(LOAD_PERIOD_S)
            load = self._load_now()
            if load != self._load or loop.time() - sent_at >= LOAD_HEARTBEAT_S:
                self._load, sent_at = load, loop.time()
                self._publish(wire.Load, waiting=load[0], running=load[1], kv_usage=load[2])
            self._send_adapters()
            self._send_draining()

    def _send_adapters(self) -> None:
        # Polled with the load rather than hooked into the adapter API: loads and unloads
        # are rare, and a change reaches routers within one load period.
        names = self._adapters()
        if names != self._adapters_sent:
            if self._adapters_sent is not None or names:
                self._publish(wire.Adapters, adapters=names)
            self._adapters_sent = names

    def _send_draining(self) -> None:
        if self._draining() and not self._draining_sent:
            self._draining_sent = True
            self._publish(wire.Draining)

    # -- requests -------------------------------------------------------------------

    async def track(
        self,
        request: web.Request,
        token_ids: list[int],
        salt: str,
        stream: AsyncIterator[Any],
    ) -> AsyncIterator[Any]:
        """`stream` as is; its first output marks the prompt cached under the header's keys."""
        keys = parse_keys(request.headers.get(wire.PREFIX_KEYS_HEADER))
        sent_at = self._evictions
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for item in stream:
                if keys:
                    self.stored(token_ids, salt, keys, sent_at)
                    keys = []
                yield item

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot().model_dump(mode="json", exclude={"type"}))

    async def events(self, request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[wire.Event | None] = asyncio.Queue()
        first = self.snapshot()  # and subscribe in the same loop turn: no delta is lost
        self.subscribers.add(queue)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await resp.prepare(request)
            await resp.write(wire.encode_event(first))
            while (event := await queue.get()) is not None:
                await resp.write(wire.encode_event(event))
        except ConnectionResetError:
            pass  # the follower went away
        finally:
            self.subscribers.discard(queue)
        return resp


def install(app: web.Application, core: CoreClient, model_name: str, draining: Any) -> RouterFeed:
    """Serve the feed on `app`; returns it (for `track`)."""
    feed = RouterFeed(core, model_name, draining, lambda: _adapter_names(app))
    app.router.add_get(wire.STATE_PATH, feed.state)
    app.router.add_get(wire.EVENTS_PATH, feed.events)
    app.on_startup.append(feed.start)
    app.on_shutdown.append(feed.stop)
    return feed


def _adapter_names(app: web.Application) -> list[str]:
    api = app.get(ADAPTERS)  # set by --enable-lora (engine/adapters/hooks.py)
    return [a.name for a in api.registry.all()] if api is not None else []
