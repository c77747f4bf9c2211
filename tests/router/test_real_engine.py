"""The router in front of two real bundled engines (`infleet serve` on a tiny random
checkpoint), as separate processes, driven through the `openai` SDK."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.lora.written_adapters import Base, adapter_files, write_dir
from tests.router.processes import Launched, run_router, serve_engine

pytest.importorskip("torch")
openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow
ADMIN = "sk-admin-of-the-test-fleet"


@dataclass
class Fleet:
    engines: list[Launched]
    router: Launched
    model: str
    lora_dirs: list[Path]  # each engine's --lora-dir

    def client(self, url: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    from tests.engine.tiny_models import build_checkpoint

    # A longer context than the default tiny shape, for multi-turn prompts.
    model = build_checkpoint(
        tmp_path_factory.mktemp("tiny-llama"), "llama", seed=3, max_position_embeddings=2048
    )
    lora_dirs = [tmp_path_factory.mktemp(f"lora-{i}") for i in range(2)]
    # With an admin key (the operator's, for loading adapters), the engines' /router/*
    # feed answers that key only: the router gets it as on Kubernetes (operator/router.py).
    lora = ["--enable-lora", "--admin-api-key", ADMIN]
    engines = [serve_engine(model, *lora, "--lora-dir", str(d)) for d in lora_dirs]
    name = httpx.get(engines[0].url + "/v1/models").json()["data"][0]["id"]
    args = [a for e in engines for a in ("--replica", e.url)]
    router = run_router("--model", name, *args, env={"INFLEET_ADMIN_API_KEY": ADMIN})
    yield Fleet(engines, router, name, lora_dirs)
    for process in (router, *engines):
        process.stop()


def hits(engine: Launched) -> float:
    text = httpx.get(engine.url + "/metrics").text
    found = re.search(r"^infleet:prefix_cache_hits_total\{[^}]*\} (\S+)$", text, re.M)
    assert found, text[:2000]
    return float(found.group(1))


def test_streamed_and_whole_answers_match_the_engine(fleet: Fleet):
    messages = [{"role": "user", "content": "The quick brown fox"}]
    direct = fleet.client(fleet.engines[0].url).chat.completions.create(
        model=fleet.model, messages=messages, max_tokens=12, temperature=0
    )
    routed = fleet.client(fleet.router.url)
    whole = routed.chat.completions.create(
        model=fleet.model, messages=messages, max_tokens=12, temperature=0
    )
    assert whole.choices[0].message.content == direct.choices[0].message.content
    stream = routed.chat.completions.create(
        model=fleet.model, messages=messages, max_tokens=12, temperature=0, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 2 and "".join(pieces) == direct.choices[0].message.content
    with pytest.raises(openai.NotFoundError) as err:
        routed.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    assert err.value.body["code"] == "model_not_found"  # type: ignore[index]


def conversations(fleet: Fleet, url_of_turn, tag: str) -> list[int]:
    """Four conversations of three turns; the cached prompt tokens of each later turn."""
    cached = []
    for n in range(4):
        # Unique from its first tokens: no two conversations share a KV block.
        system = f"{n}{tag}: the quick brown fox jumps over the lazy dog. " * 6
        messages = [{"role": "system", "content": system}]
        for turn in range(3):
            messages.append({"role": "user", "content": f"What is the capital of France? {turn}"})
            client = fleet.client(url_of_turn(n, turn))
            out = client.chat.completions.create(
                model=fleet.model, messages=messages, max_tokens=4, temperature=0
            )
            details = out.usage.prompt_tokens_details if out.usage else None
            if turn:
                cached.append(details.cached_tokens if details else 0)
            messages.append({"role": "assistant", "content": out.choices[0].message.content})
    return cached


def test_multi_turn_conversations_return_to_their_prefix(fleet: Fleet):
    before = sum(hits(e) for e in fleet.engines)
    routed = conversations(fleet, lambda n, turn: fleet.router.url, "routed")
    routed_hits = sum(hits(e) for e in fleet.engines) - before
    # Router off: a Service spreads requests without regard to prefixes (round robin here).
    urls = [e.url for e in fleet.engines]
    spread = conversations(fleet, lambda n, turn: urls[(n + turn) % 2], "spread")
    spread_hits = sum(hits(e) for e in fleet.engines) - before - routed_hits
    assert all(c > 0 for c in routed), routed  # every later turn found its history cached
    assert sum(1 for c in spread if c == 0) >= 4  # the turns that switched replica
    assert routed_hits >= 2 * spread_hits > 0


TINY_LLAMA = Base(hidden=64, layers=2, q=4 * 16, kv=2 * 16)  # tests/engine/tiny_models.py


def test_an_adapter_request_goes_to_the_replica_that_has_it(fleet: Fleet):
    holder = fleet.engines[1]
    path = write_dir(fleet.lora_dirs[1] / "sql", adapter_files(TINY_LLAMA, rank=8, seed=5))
    body = {"lora_name": "sql", "lora_path": str(path)}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    loaded = httpx.post(holder.url + "/v1/load_lora_adapter", json=body, headers=admin)
    assert loaded.status_code == 200, loaded.text

    def router_knows() -> bool:  # from the holder's feed: the router has no --adapter
        return "sql" in {m["id"] for m in httpx.get(fleet.router.url + "/v1/models").json()["data"]}

    deadline = time.monotonic() + 30
    while not router_knows():
        assert time.monotonic() < deadline, "the router never listed the published adapter"
        time.sleep(0.1)
    for n in range(8):  # different prompts: ties alone would spread them over both
        body = {"model": "sql", "prompt": f"Question {n}: which table?", "max_tokens": 2}
        resp = httpx.post(fleet.router.url + "/v1/completions", json=body, timeout=60)
        # 501 `adapter_not_applied` until the engine applies adapters; never the other
        # replica's 404.
        assert resp.status_code in (200, 501), resp.text
    metrics = httpx.get(fleet.router.url + "/metrics").text
    # Not one was sent to the replica without it (a 404 there is retried, and counted).
    assert 'infleet:router_retries_total{reason="no_adapter"}' not in metrics
    assert re.search(r'^infleet:router_decisions_total\{reason="adapter"\} [1-9]', metrics, re.M)
    unload = {"lora_name": "sql"}
    assert httpx.post(holder.url + "/v1/unload_lora_adapter", json=unload, headers=admin).is_success


def test_sigterm_on_a_replica_fails_no_request(fleet: Fleet):
    """A spot notice in effect: one engine drains mid-traffic (its stream in flight
    finishes), publishes `draining` and refuses new work with 503 `draining`, then exits;
    the router sends new work to the other engine (retrying any refusal), and no request
    fails."""
    draining = fleet.engines[0]
    in_flight = fleet.client(draining.url).completions.create(
        model=fleet.model, prompt="A long story:", max_tokens=150, temperature=0, stream=True
    )
    first = next(iter(in_flight))
    draining.proc.send_signal(signal.SIGTERM)
    client = fleet.client(fleet.router.url)
    reasons = [
        client.completions.create(
            model=fleet.model, prompt=f"Request {n}: the lazy dog", max_tokens=4, temperature=0
        )
        .choices[0]
        .finish_reason
        for n in range(12)
    ]
    assert reasons == ["length"] * 12
    rest = list(in_flight)
    assert first.choices and rest[-1].choices[0].finish_reason == "length"
    assert draining.proc.wait(30) == 0  # it drained and exited cleanly
    # How the router learned of the drain varies: the engine's `draining` event
    # (engine/server/router_feed.py), its /health poll, or a 503 `draining` retried.
