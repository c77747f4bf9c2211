"""Drain-and-retry and per-tenant limits through the running router (fake engines)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import yaml

from infleet.api.router import RouterSpec
from infleet.api.tenants import hash_key
from infleet.router.config import RouterConfig
from infleet.router.proxy import Router
from infleet.router.replicas import Endpoint
from tests.router.fake_engine import FakeEngine
from tests.router.harness import Loop, RunningRouter, start_engines, static_discovery, wait_until


def test_a_draining_replica_refusal_is_retried_elsewhere(loop: Loop):
    engines = [FakeEngine("a", refuse=True), FakeEngine("b")]  # a: SIGTERMed, probe not yet failed
    urls = start_engines(loop, engines)
    router = RunningRouter(loop, RouterConfig(model="tiny"), static_discovery(urls, interval=30))
    try:
        for n in range(8):
            body = {"model": "tiny", "prompt": f"request {n} " * 40, "stream": n % 2 == 0}
            resp = httpx.post(router.url + "/v1/completions", json=body)
            assert resp.status_code == 200, resp.text
            assert "b-0" in resp.text
        assert len(engines[1].seen) == 8
        # The first refusal suspends a, so later requests do not even try it.
        assert 'infleet:router_retries_total{reason="draining"} 1.0' in router.metrics()
    finally:
        router.stop()
        for e in engines:
            loop.run(e.stop())


def test_an_unreachable_replica_is_retried_elsewhere(loop: Loop):
    engine = FakeEngine("b")
    (url,) = start_engines(loop, [engine])
    dead = "http://127.0.0.1:9"  # discard port: nothing listens, the connect is refused

    async def stale_discovery(router: Router) -> None:  # still lists a replica that died
        router.replicas.sync([Endpoint("dead", dead), Endpoint("b", url)])
        await asyncio.Event().wait()

    router = RunningRouter(loop, RouterConfig(model="tiny"), stale_discovery)
    try:
        for n in range(6):
            body = {"model": "tiny", "prompt": f"prompt {n} " * 40}
            assert httpx.post(router.url + "/v1/completions", json=body).status_code == 200
        assert len(engine.seen) == 6
        assert 'infleet:router_retries_total{reason="unreachable"} 1.0' in router.metrics()
    finally:
        router.stop()
        loop.run(engine.stop())


def keys_file(tmp_path: Path, tenants: dict[str, list[str]]) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({t: [hash_key(k) for k in keys] for t, keys in tenants.items()}))
    return path


def test_tenant_over_its_rate_gets_429_while_another_is_unaffected(loop: Loop, tmp_path: Path):
    engine = FakeEngine("a")
    urls = start_engines(loop, [engine])
    spec = RouterSpec.model_validate(
        {"tenantLimits": {"requestsPerSecond": 0.5, "burst": 2},
         "tenants": [{"tenant": "batch", "maxConcurrentRequests": 1}]}
    )  # fmt: skip
    path = keys_file(tmp_path, {"alice": ["key-a"], "bob": ["key-b"], "batch": ["key-c"]})
    config = RouterConfig(model="tiny", spec=spec, keys_file=path)
    router = RunningRouter(loop, config, static_discovery(urls))
    wait_until(loop, lambda: router.router.replicas.ready_count(0) == 1)

    def send(key: str | None, **body) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(
            router.url + "/v1/completions",
            json={"model": "tiny", "prompt": "hi", **body},
            headers=headers,
            timeout=10,
        )

    try:
        assert [send("key-a").status_code for _ in range(2)] == [200, 200]
        limited = send("key-a")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(limited.headers["Retry-After"]) <= 2
        assert [send("key-b").status_code for _ in range(2)] == [200, 200]
        assert send(None).status_code == 401
        assert send("key-x").json()["error"]["code"] == "invalid_api_key"
        assert len(engine.seen) == 4  # nothing refused ever reached the replica

        # batch: one request at a time (its override replaces the rate limit).
        engine.tokens, engine.token_delay = 20, 0.05
        started = threading.Event()

        def slow_stream() -> None:
            headers = {"Authorization": "Bearer key-c"}
            body = {"model": "tiny", "prompt": "hi", "stream": True}
            with httpx.stream(
                "POST", router.url + "/v1/completions", json=body, headers=headers
            ) as resp:
                for _ in resp.iter_lines():
                    started.set()

        streamer = threading.Thread(target=slow_stream)
        streamer.start()
        assert started.wait(10)
        second = send("key-c")
        assert second.status_code == 429 and second.headers["Retry-After"] == "1"
        assert "concurrent" in second.json()["error"]["message"]
        streamer.join(10)
        assert send("key-c").status_code == 200
        metrics = router.metrics()
        for line in (
            'infleet:router_tenant_requests_total{outcome="admitted",tenant="alice"} 2.0',
            'infleet:router_tenant_requests_total{outcome="rate_limited",tenant="alice"} 1.0',
            'infleet:router_tenant_requests_total{outcome="admitted",tenant="bob"} 2.0',
            'infleet:router_tenant_requests_total{outcome="concurrency_limited",tenant="batch"} 1.0',
        ):
            assert line in metrics
    finally:
        router.stop()
        loop.run(engine.stop())
