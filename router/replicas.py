"""The router's live view of the replicas: what discovery says, what the router itself
has seen (requests in flight, refusals), and what engines publish (api/router_wire.py).

It turns that into the picker's `Candidate`s. Load comes from the engine's published
queue while it is fresh, plus the requests this router sent since; without a fresh
publication, from this router's own requests in flight. A replica that refused a request
(draining, connection refused) is suspended for a moment, so retries go elsewhere before
discovery catches up.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from infleet.api import router_wire as wire
from infleet.router.picker import Candidate
from infleet.router.prefix_index import PrefixIndex
from infleet.router.prefix_keys import KEY_TOKENS

FRESH_SECONDS = 5.0  # published load older than this is not trusted
SUSPEND_SECONDS = 5.0  # after a refusal
ADAPTERS_REMEMBERED = 64  # per replica, of those this router sent there
ADAPTER_MISS_SECONDS = 5.0  # a replica that answered 404 for an adapter, asked again after


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One replica as discovery reports it."""

    name: str
    url: str  # base URL, no trailing slash, no /v1
    ready: bool = True
    draining: bool = False


@dataclass(slots=True)
class Replica:
    endpoint: Endpoint
    in_flight: int = 0
    suspended_until: float = 0.0
    # What the engine published (None: nothing yet, or it publishes nothing).
    published: wire.Load | None = None
    published_at: float = 0.0
    sent_since_published: int = 0
    # This router's requests that ended since: a load sample taken mid-request (every
    # 100 ms at most) still counts them, and a conversation's next turn, sent a moment
    # later, must not see its own previous turn as load on the replica that holds it.
    finished_since_published: int = 0
    published_adapters: frozenset[str] | None = None
    published_draining: bool = False
    epoch: str = ""
    seq: int = -1
    sent_adapters: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # Adapter -> until when it is taken as missing there: the replica answered 404 for
    # it (an engine that publishes no adapters, or one that unloaded it a moment ago).
    missing_adapters: dict[str, float] = field(default_factory=dict)


class ReplicaSet:
    def __init__(self, index: PrefixIndex | None = None) -> None:
        self.index = index or PrefixIndex()
        self.replicas: dict[str, Replica] = {}
        self.changed = asyncio.Event()  # set on every membership or readiness change

    def sync(self, endpoints: Iterable[Endpoint]) -> None:
        """Discovery's full list: add, update, and drop replicas to match it."""
        wanted = {e.name: e for e in endpoints}
        for name in list(self.replicas):
            if name not in wanted:
                del self.replicas[name]
                self.index.forget(name)
        for name, endpoint in wanted.items():
            replica = self.replicas.get(name)
            if replica is None:
                self.replicas[name] = Replica(endpoint)
            elif replica.endpoint != endpoint:
                replica.endpoint = endpoint
        self._notify()

    def suspend(self, name: str, now: float, seconds: float = SUSPEND_SECONDS) -> None:
        replica = self.replicas.get(name)
        if replica is not None:
            replica.suspended_until = now + seconds

    def _eligible(self, r: Replica, now: float) -> bool:
        e = r.endpoint
        draining = e.draining or r.published_draining
        return e.ready and not draining and r.suspended_until <= now

    def candidates(self, keys: Sequence[int], adapter: str | None, now: float) -> list[Candidate]:
        out = []
        for name, r in self.replicas.items():
            fresh = r.published is not None and now - r.published_at < FRESH_SECONDS
            if fresh:
                assert r.published is not None
                waiting = r.published.waiting + r.sent_since_published
                running, kv = r.published.running, r.published.kv_usage
                done = min(r.finished_since_published, waiting + running)
                waiting, running = max(0, waiting - done), running - max(0, done - waiting)
            else:
                waiting, running, kv = r.in_flight, 0, None
            published = r.published_adapters
            adapters = published if published is not None else r.sent_adapters
            out.append(
                Candidate(
                    name=name,
                    ready=self._eligible(r, now),
                    waiting=waiting,
                    running=running,
                    kv_usage=kv,
                    cached_keys=self.index.matched(name, keys) if keys else 0,
                    has_adapter=adapter is not None and adapter in adapters,
                    lacks_adapter=adapter is not None
                    and (
                        r.missing_adapters.get(adapter, 0.0) > now
                        or (published is not None and adapter not in published)
                    ),
                )
            )
        return out

    def published_adapters(self) -> frozenset[str]:
        """Adapters some replica says it has loaded."""
        found: frozenset[str] = frozenset()
        for r in self.replicas.values():
            if r.published_adapters:
                found |= r.published_adapters
        return found

    def url(self, name: str) -> str:
        return self.replicas[name].endpoint.url

    def started(self, name: str, keys: Sequence[int], adapter: str | None) -> None:
        """A request went to `name`: count it, and expect its prefix cached there."""
        r = self.replicas.get(name)
        if r is None:
            return
        r.in_flight += 1
        r.sent_since_published += 1
        self.index.record(name, keys)
        if adapter is not None:
            r.sent_adapters[adapter] = None
            r.sent_adapters.move_to_end(adapter)
            while len(r.sent_adapters) > ADAPTERS_REMEMBERED:
                r.sent_adapters.popitem(last=False)

    def finished(self, name: str) -> None:
        r = self.replicas.get(name)
        if r is not None and r.in_flight > 0:
            r.in_flight -= 1
            r.finished_since_published += 1

    def refused(self, name: str, keys: Sequence[int], now: float, *, suspend: bool) -> None:
        """`name` turned the request away before any token: it holds nothing new."""
        self.index.evict(name, keys[-1:])  # cut the chain the router just recorded
        if suspend:
            self.suspend(name, now)
            self._notify()

    def lacks_adapter(self, name: str, adapter: str, now: float) -> None:
        """`name` answered 404 for `adapter`: send its requests elsewhere for a while."""
        r = self.replicas.get(name)
        if r is not None:
            r.sent_adapters.pop(adapter, None)
            r.missing_adapters = {a: t for a, t in r.missing_adapters.items() if t > now}
            r.missing_adapters[adapter] = now + ADAPTER_MISS_SECONDS

    def apply(self, name: str, event: wire.Event, now: float) -> bool:
        """Fold one published event in; False when the follower must resync (gap, restart)."""
        r = self.replicas.get(name)
        if r is None:
            return False
        if isinstance(event, wire.Snapshot):
            if event.epoch != r.epoch:
                self.index.forget(name)  # a restarted engine: nothing cached survives
            r.epoch, r.seq = event.epoch, event.seq
            r.published_adapters = frozenset(event.adapters)
            r.published_draining = event.draining
            if event.kv_capacity_tokens:
                self.index.set_capacity(name, event.kv_capacity_tokens // KEY_TOKENS)
            self.index.replace(name, [int(k, 16) for k in event.keys])
            self._set_load(r, event, now)
            self._notify()
            return True
        if event.seq != r.seq + 1:
            return False
        r.seq = event.seq
        if isinstance(event, wire.Load):
            self._set_load(r, event, now)
        elif isinstance(event, wire.Stored):
            self.index.record(name, [int(k, 16) for k in event.keys])
        elif isinstance(event, wire.Evicted):
            self.index.evict(name, (int(k, 16) for k in event.keys))
        elif isinstance(event, wire.Cleared):
            self.index.replace(name, [])
        elif isinstance(event, wire.Adapters):
            r.published_adapters = frozenset(event.adapters)
        elif isinstance(event, wire.Draining):
            r.published_draining = True
            self._notify()
        return True

    def unpublished(self, name: str) -> None:
        """The replica's event stream ended: fall back to the router's own view."""
        r = self.replicas.get(name)
        if r is not None:
            r.published, r.published_adapters, r.seq = None, None, -1

    @staticmethod
    def _set_load(r: Replica, load: wire.Load, now: float) -> None:
        r.published = wire.Load(
            seq=load.seq, waiting=load.waiting, running=load.running, kv_usage=load.kv_usage
        )
        r.published_at, r.sent_since_published, r.finished_since_published = now, 0, 0

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def ready_count(self, now: float) -> int:
        return sum(self._eligible(r, now) for r in self.replicas.values())
