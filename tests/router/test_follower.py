"""Published replica state (api/router_wire.py) steers the router: cached keys, load, adapters,
draining; a gap in the stream makes the follower resync. One fake engine publishes, the
other does not (404), as an older engine or vLLM would."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from infleet.api import router_wire as wire
from infleet.api.tenants import DEFAULT_TENANT
from infleet.router.config import RouterConfig
from infleet.router.picker import rendezvous
from infleet.router.prefix_keys import canonical_prompt, prefix_keys, salt_of, to_hex
from tests.router.fake_engine import FakeEngine
from tests.router.harness import Loop, RunningRouter, start_engines, static_discovery, wait_until


@pytest.fixture
def fleet(loop: Loop) -> Iterator[tuple[FakeEngine, FakeEngine, RunningRouter]]:
    a, b = FakeEngine("a", publish=True), FakeEngine("b")
    urls = start_engines(loop, [a, b])
    router = RunningRouter(loop, RouterConfig(model="tiny"), static_discovery(urls))
    yield a, b, router
    router.stop()
    for e in (a, b):
        loop.run(e.stop())


def publish(loop: Loop, engine: FakeEngine, event: wire.Event) -> None:
    assert engine.events is not None
    loop.loop.call_soon_threadsafe(engine.events.put_nowait, event)


def snapshot(seq: int = 0, **fields) -> wire.Snapshot:
    base = dict(epoch="e1", model="tiny", waiting=0, running=0, kv_usage=0.1)
    return wire.Snapshot(seq=seq, **{**base, "kv_capacity_tokens": 65536, **fields})


def body_tied_to(b_url: str, a_url: str) -> tuple[dict, list[int]]:
    """A request that a tie would send to b (so only a's published cache can pull it to a)."""
    for n in range(100):
        body = {"model": "tiny", "prompt": f"a document numbered {n}. " * 30}
        keys = prefix_keys(salt_of(DEFAULT_TENANT, "tiny"), canonical_prompt(body))
        if rendezvous(keys[0], b_url) > rendezvous(keys[0], a_url):
            return body, keys
    raise AssertionError("no such prompt")


def send(router: RunningRouter, body: dict) -> str:
    resp = httpx.post(router.url + "/v1/completions", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["served_by"]


def test_published_cache_load_and_draining_steer_requests(fleet, loop):
    a, b, router = fleet
    body, keys = body_tied_to(b.url, a.url)
    replicas = router.router.replicas
    wait_until(loop, lambda: a.event_streams == 1 and replicas.ready_count(0) == 2)
    publish(loop, a, snapshot(keys=to_hex(keys)))
    wait_until(loop, lambda: replicas.replicas[a.url].epoch == "e1")
    assert send(router, body) == "a"  # a's published cache beats the tie

    publish(loop, a, wire.Evicted(seq=1, keys=to_hex(keys[:1])))  # the root gone: nothing left
    wait_until(loop, lambda: replicas.index.matched(a.url, keys) == 0)
    replicas.index.forget(b.url)
    assert send(router, body) == "b"

    publish(loop, a, wire.Stored(seq=2, keys=to_hex(keys)))
    publish(loop, a, wire.Load(seq=3, waiting=30, running=8, kv_usage=0.95))  # saturated
    wait_until(loop, lambda: replicas.replicas[a.url].seq == 3)
    replicas.index.forget(b.url)
    assert send(router, body) == "b"  # load wins over the cached prefix
    assert 'infleet:router_decisions_total{reason="load"} 2.0' in router.metrics()

    publish(loop, a, wire.Load(seq=4, waiting=0, running=0, kv_usage=0.2))
    a.adapters = ("sql",)
    publish(loop, a, wire.Adapters(seq=5, adapters=["sql"]))
    wait_until(loop, lambda: replicas.replicas[a.url].seq == 5)
    assert send(router, {"model": "sql", "prompt": "select"}) == "a"  # known only from a
    ids = [m["id"] for m in httpx.get(router.url + "/v1/models").json()["data"]]
    assert ids == ["tiny", "sql"]

    publish(loop, a, wire.Draining(seq=6))
    wait_until(loop, lambda: replicas.ready_count(asyncio.get_running_loop().time()) == 1)
    assert {send(router, {"model": "tiny", "prompt": f"p{n} " * 90}) for n in range(5)} == {"b"}


def test_a_gap_in_the_stream_resyncs_from_a_new_snapshot(fleet, loop):
    a, _, router = fleet
    replicas = router.router.replicas
    wait_until(loop, lambda: a.event_streams == 1)
    publish(loop, a, snapshot(keys=["00000000000000aa"]))
    wait_until(loop, lambda: replicas.replicas[a.url].seq == 0)
    publish(loop, a, wire.Stored(seq=2, keys=["00000000000000bb"]))  # seq 1 was lost
    wait_until(loop, lambda: a.event_streams == 2, timeout=5)
    assert replicas.replicas[a.url].published is None  # own view until the new snapshot
    publish(loop, a, snapshot(seq=7, epoch="e2", keys=["00000000000000cc"]))
    wait_until(loop, lambda: replicas.replicas[a.url].epoch == "e2")
    assert replicas.index.matched(a.url, [0xCC]) == 1
    assert replicas.index.matched(a.url, [0xAA]) == 0  # a new epoch: the old cache is gone


def test_a_snapshot_of_a_large_cache_is_followed(fleet, loop):
    """20,000 keys make a 380 KB line: more than a line reader's buffer holds."""
    a, _, router = fleet
    replicas = router.router.replicas
    wait_until(loop, lambda: a.event_streams == 1)
    keys = list(range(1, 20_001))
    publish(loop, a, snapshot(keys=to_hex(keys), kv_capacity_tokens=2_000_000))
    wait_until(loop, lambda: replicas.replicas[a.url].epoch == "e1")
    assert replicas.index.matched(a.url, keys) == 20_000
    assert a.event_streams == 1  # followed, not failed and reconnected


def test_a_keyed_feed_is_followed_with_the_admin_key_only(loop):
    # Engines with keys serve their feed to the admin key (engine/server/auth.py): a router
    # given it follows; one without it routes on its own view and keeps serving.
    engines = [FakeEngine("keyed", publish=True, feed_key="sk-admin", adapters=("sql",))]
    urls = start_engines(loop, engines)
    routers = {
        key: RunningRouter(loop, RouterConfig(model="tiny", admin_key=key), static_discovery(urls))
        for key in ("sk-admin", "sk-wrong")
    }
    try:
        publish(loop, engines[0], snapshot(adapters=["sql"]))
        followed = routers["sk-admin"].router.replicas
        wait_until(loop, lambda: followed.published_adapters() == {"sql"})
        refused = routers["sk-wrong"].router.replicas
        wait_until(loop, lambda: engines[0].event_streams >= 1 and refused.ready_count(0) == 1)
        assert refused.published_adapters() == frozenset()
        body = {"model": "tiny", "prompt": "hello"}
        assert send(routers["sk-wrong"], body) == "keyed"
    finally:
        for router in routers.values():
            router.stop()
        loop.run(engines[0].stop())
