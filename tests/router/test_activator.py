"""Scale from zero: with no ready replica the router holds requests, exports them as held
demand, and releases them when a replica turns ready; past its bounds it answers 503."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from infleet.api.router import RouterSpec
from infleet.router.config import RouterConfig
from tests.router.fake_engine import FakeEngine
from tests.router.harness import Loop, RunningRouter, start_engines, static_discovery, wait_until


def post(url: str, n: int) -> httpx.Response:
    body = {"model": "tiny", "prompt": f"held request {n}", "stream": n % 2 == 1}
    return httpx.post(url + "/v1/completions", json=body, timeout=30)


def test_requests_wait_for_the_first_replica_then_all_succeed(loop: Loop):
    engine = FakeEngine("a", draining=True)  # its /health says 503: no replica is ready
    urls = start_engines(loop, [engine])
    router = RunningRouter(loop, RouterConfig(model="tiny"), static_discovery(urls, 0.05))
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            held = [pool.submit(post, router.url, n) for n in range(4)]
            wait_until(loop, lambda: router.router.activator.held == 4)
            assert "infleet:router_held_requests 4.0" in router.metrics()
            assert engine.seen == []
            engine.draining = False  # the cold start is over: /health says ok
            results = [f.result(30) for f in held]
        assert [r.status_code for r in results] == [200] * 4
        assert len(engine.seen) == 4
        metrics = router.metrics()
        assert "infleet:router_held_requests 0.0" in metrics
        assert 'infleet:router_hold_outcomes_total{outcome="released"} 4.0' in metrics
    finally:
        router.stop()
        loop.run(engine.stop())


def test_hold_queue_bounds_answer_503(loop: Loop):
    engine = FakeEngine("a", draining=True)
    urls = start_engines(loop, [engine])
    spec = RouterSpec.model_validate({"holdQueue": {"maxRequests": 1, "timeoutSeconds": 1.0}})
    config = RouterConfig(model="tiny", spec=spec)
    router = RunningRouter(loop, config, static_discovery(urls, 0.05))
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, router.url, 0)
            wait_until(loop, lambda: router.router.activator.held == 1)
            start = time.monotonic()
            full = post(router.url, 1)
            assert full.status_code == 503 and time.monotonic() - start < 0.5
            assert full.json()["error"]["code"] == "no_replica"
            assert "maxRequests" in full.json()["error"]["message"]
            timed_out = first.result(10)
        assert timed_out.status_code == 503
        assert "timeoutSeconds" in timed_out.json()["error"]["message"]
        assert timed_out.headers["Retry-After"] == "5"
        assert engine.seen == []
        metrics = router.metrics()
        assert 'infleet:router_hold_outcomes_total{outcome="full"} 1.0' in metrics
        assert 'infleet:router_hold_outcomes_total{outcome="timeout"} 1.0' in metrics
    finally:
        router.stop()
        loop.run(engine.stop())
