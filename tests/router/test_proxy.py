"""The router as an HTTP proxy, against fake engines on real sockets (httpx as client)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from infleet.api.router_wire import PREFIX_KEYS_HEADER
from infleet.api.tenants import DEFAULT_TENANT
from infleet.router.config import RouterConfig
from infleet.router.prefix_keys import canonical_prompt, prefix_keys, salt_of, to_hex
from tests.router.fake_engine import FakeEngine
from tests.router.harness import Loop, RunningRouter, start_engines, static_discovery, wait_until

SYSTEM = "You are a careful assistant who answers in full sentences. " * 12  # > 256 bytes


def chat(system: str, turns: list[str], **extra) -> dict:
    messages = [{"role": "system", "content": system}]
    for i, turn in enumerate(turns):
        if i:
            messages.append({"role": "assistant", "content": f"answer {i}"})
        messages.append({"role": "user", "content": turn})
    return {"model": "tiny", "messages": messages, **extra}


@pytest.fixture
def fleet(loop: Loop) -> Iterator[tuple[list[FakeEngine], RunningRouter]]:
    engines = [FakeEngine("a"), FakeEngine("b")]
    urls = start_engines(loop, engines)
    router = RunningRouter(
        loop, RouterConfig(model="tiny", adapters=frozenset({"sql"})), static_discovery(urls)
    )
    wait_until(loop, lambda: router.router.replicas.ready_count(0) == 2)
    yield engines, router
    router.stop()
    for engine in engines:
        loop.run(engine.stop())


def served_by(engines: list[FakeEngine]) -> dict[str, str]:
    """Which engine got each request, by its last user message."""
    return {s.body["messages"][-1]["content"]: e.name for e in engines for s in e.seen}


def test_sse_is_relayed_as_it_arrives(fleet):
    engines, router = fleet
    for e in engines:
        e.tokens, e.token_delay = 4, 0.25
    arrivals, lines = [], []
    body = {"model": "tiny", "prompt": "hello", "stream": True}
    with httpx.stream("POST", router.url + "/v1/completions", json=body, timeout=10) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
                lines.append(line)
    assert lines[-1] == "data: [DONE]"
    texts = [json.loads(line[6:])["choices"][0]["text"] for line in lines[:-1]]
    name = texts[0].split("-")[0]
    assert texts == [f"{name}-{i}" for i in range(4)]
    # Relayed chunk by chunk, not buffered: the first token came long before the last.
    assert arrivals[3] - arrivals[0] > 0.5


def test_client_hang_up_aborts_the_upstream_stream(fleet, loop):
    engines, router = fleet
    for e in engines:
        e.tokens, e.token_delay = 200, 0.05
    body = {"model": "tiny", "prompt": "a long story", "stream": True}
    with httpx.stream("POST", router.url + "/v1/completions", json=body, timeout=10) as resp:
        for n, _ in enumerate(resp.iter_lines()):
            if n >= 3:
                break  # leaving the block closes the connection mid-stream
    wait_until(loop, lambda: sum(e.aborted for e in engines) == 1)
    assert sum(e.finished for e in engines) == 0
    wait_until(loop, lambda: router.router.in_flight == 0)


def test_non_streamed_answer_and_headers_are_forwarded(fleet):
    engines, router = fleet
    body = chat(SYSTEM, ["What is a router?"])
    headers = {"Authorization": "Bearer anything", "X-Request-Id": "req-1"}
    resp = httpx.post(router.url + "/v1/chat/completions", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["finish_reason"] == "length"
    (seen,) = [s for e in engines for s in e.seen]
    assert seen.body == body
    assert seen.headers["authorization"] == "Bearer anything"
    assert seen.headers["x-request-id"] == "req-1"
    keys = prefix_keys(salt_of(DEFAULT_TENANT, "tiny"), canonical_prompt(body))
    assert len(keys) >= 2
    assert seen.headers[PREFIX_KEYS_HEADER] == ",".join(to_hex(keys))


def test_conversations_return_to_their_replica_and_spread(fleet):
    engines, router = fleet
    systems = [f"System prompt of tenant app {n}. " * 20 for n in range(8)]
    for turn in range(3):
        for n, system in enumerate(systems):
            turns = [f"conv {n} turn {t}" for t in range(turn + 1)]
            resp = httpx.post(router.url + "/v1/chat/completions", json=chat(system, turns))
            assert resp.status_code == 200
    where = served_by(engines)
    for n in range(8):
        homes = {where[f"conv {n} turn {t}"] for t in range(3)}
        assert len(homes) == 1, f"conversation {n} moved between replicas: {homes}"
    assert {where[f"conv {n} turn 0"] for n in range(8)} == {"a", "b"}
    metrics = router.metrics()
    assert 'infleet:router_decisions_total{reason="prefix"} 16.0' in metrics
    assert "infleet:router_prefix_hits_total 16.0" in metrics
    assert "infleet:router_prefix_lookups_total 24.0" in metrics


def test_adapter_requests_stay_on_the_replica_that_has_it(fleet):
    engines, _ = fleet
    for e in engines:
        e.adapters = ("sql",)
    _, router = fleet
    for n in range(6):
        body = {"model": "sql", "prompt": f"unrelated prompt number {n}"}
        assert httpx.post(router.url + "/v1/completions", json=body).status_code == 200
    assert len({e.name for e in engines if e.seen}) == 1
    assert 'infleet:router_decisions_total{reason="adapter"} 5.0' in router.metrics()


def test_a_replica_without_the_adapter_is_skipped_after_its_404(fleet):
    # Neither publishes its adapters: the router learns from b's 404 (a replica that is
    # still loading it, as in a scale-out) and asks a, without failing the request.
    engines, router = fleet
    engines[0].adapters = ("sql",)
    for n in range(8):
        body = {"model": "sql", "prompt": f"another prompt, number {n}", "stream": n % 2 == 1}
        resp = httpx.post(router.url + "/v1/completions", json=body)
        assert resp.status_code == 200, resp.text
    assert len(engines[0].seen) == 8
    assert len(engines[1].seen) <= 1  # asked once at most: then taken as lacking it
    # No replica has it: the router answers 404 itself once each has said so.
    engines[0].adapters = ()
    resp = httpx.post(router.url + "/v1/completions", json={"model": "sql", "prompt": "x"})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"


def test_unknown_model_is_404_without_touching_a_replica(fleet):
    engines, router = fleet
    resp = httpx.post(router.url + "/v1/completions", json={"model": "gpt-9", "prompt": "x"})
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "gpt-9" in error["message"]
    assert all(e.seen == [] for e in engines)


def test_bad_requests_get_openai_errors(fleet):
    engines, router = fleet
    cases = [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"prompt": "no model"}).encode(), 400),
    ]
    for raw, status in cases:
        resp = httpx.post(router.url + "/v1/completions", content=raw)
        assert resp.status_code == status
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    resp = httpx.get(router.url + "/v1/embeddings")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    assert all(e.seen == [] for e in engines)


def test_models_lists_the_model_and_its_adapters(fleet):
    _, router = fleet
    ids = [m["id"] for m in httpx.get(router.url + "/v1/models").json()["data"]]
    assert ids == ["tiny", "sql"]


def test_body_over_the_limit_is_413(loop):
    engine = FakeEngine("a")
    urls = start_engines(loop, [engine])
    config = RouterConfig(model="tiny", max_body_bytes=4096)
    router = RunningRouter(loop, config, static_discovery(urls))
    try:
        big = {"model": "tiny", "prompt": "x" * 5000}
        resp = httpx.post(router.url + "/v1/completions", json=big)
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "request_too_large"

        def chunked():  # no Content-Length: the limit is enforced while reading
            yield json.dumps(big).encode()

        resp = httpx.post(router.url + "/v1/completions", content=chunked())
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "request_too_large"
        small = {"model": "tiny", "prompt": "x" * 1000}
        wait_until(loop, lambda: router.router.replicas.ready_count(0) == 1)
        assert httpx.post(router.url + "/v1/completions", json=small).status_code == 200
        assert len(engine.seen) == 1
    finally:
        router.stop()
        loop.run(engine.stop())
