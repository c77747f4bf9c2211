"""The bundled engine publishes its state for the router (engine/server/router_feed.py):
a snapshot, the keys of a cached prompt as `stored`, and as `evicted` once the block
manager reuses their blocks; load while it changes; `draining` on shutdown. A real
SmolLM2 engine with a small KV cache, followed over HTTP as the router's follower does."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from infleet.api import router_wire as wire
from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.server.router_feed import key_blocks, parse_keys
from infleet.router.prefix_keys import canonical_prompt, prefix_keys, salt_of, to_hex
from tests.engine.serving import SMOLLM2, ServerThread, smollm2

pytestmark = pytest.mark.slow


class Follower:
    """Collects `/router/events` in a thread, parsed with the wire format's own parser."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[wire.Event] = []
        self.headers = headers or {}
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        kind = ""
        with httpx.stream(
            "GET", url + wire.EVENTS_PATH, headers=self.headers, timeout=None
        ) as resp:
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    self.events.append(wire.parse_event(kind, line.removeprefix("data: ")))

    def wait(self, predicate, what: str, timeout: float = 60) -> wire.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if predicate(e)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {what} in {[type(e).__name__ for e in self.events]}")


def keys_of(prompt: str) -> list[str]:
    body = {"model": SMOLLM2, "prompt": prompt}  # as the router keys it
    return to_hex(prefix_keys(salt_of("default", SMOLLM2), canonical_prompt(body)))


def complete(url: str, prompt: str, keys: list[str] | None = None) -> None:
    headers = {wire.PREFIX_KEYS_HEADER: ",".join(keys)} if keys else {}
    body = {"model": SMOLLM2, "prompt": prompt, "max_tokens": 2, "temperature": 0}
    resp = httpx.post(url + "/v1/completions", json=body, headers=headers, timeout=120)
    assert resp.status_code == 200, resp.text


def test_key_i_of_n_lies_in_block_ceil_i_plus_1_times_b_over_n():
    assert key_blocks(4, 8) == [1, 3, 5, 7]
    assert key_blocks(8, 4) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert key_blocks(3, 3) == [0, 1, 2]
    assert parse_keys("9c2e41d07a55b3f1, 03b7e6c2d1a4f890") == [
        "9c2e41d07a55b3f1",
        "03b7e6c2d1a4f890",
    ]
    assert parse_keys("not-a-key") == [] and parse_keys(None) == []


def test_the_engine_publishes_stored_then_evicted_keys_and_draining():
    # About 25 blocks of 16 tokens: two prompts of ~250 tokens cannot both stay cached.
    engine = LLMEngine(EngineArgs(device="cpu", kv_cache_memory=18 << 20), smollm2())
    with ServerThread(engine) as server:
        state = wire.Snapshot.model_validate(httpx.get(server.url + wire.STATE_PATH).json())
        bm = engine.block_manager
        assert state.model == SMOLLM2 and state.keys == [] and not state.draining
        assert state.kv_capacity_tokens == bm.num_blocks * bm.block_size
        follower = Follower(server.url)
        first = follower.wait(lambda e: isinstance(e, wire.Snapshot), "snapshot")
        assert first.epoch == state.epoch

        prompt = "The history of the lighthouse keepers of the northern coast. " * 18
        keys = keys_of(prompt)
        assert len(keys) >= 4
        complete(server.url, prompt, keys)
        stored = follower.wait(lambda e: isinstance(e, wire.Stored), "stored")
        assert stored.keys == keys  # every key's block is cached, in chain order
        assert httpx.get(server.url + wire.STATE_PATH).json()["keys"] == keys

        # Another long prompt needs the blocks: the first prompt's are reused.
        complete(server.url, "A field guide to the mushrooms of the eastern forests. " * 20)
        evicted = follower.wait(lambda e: isinstance(e, wire.Evicted), "evicted")
        assert set(evicted.keys) <= set(keys) and evicted.keys
        left = httpx.get(server.url + wire.STATE_PATH).json()["keys"]
        assert not set(left) & set(evicted.keys)
        follower.wait(lambda e: isinstance(e, wire.Load) and e.running == 0, "load at rest")
        seqs = [e.seq for e in follower.events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap: nothing lost
    # Leaving the block drains the server the way SIGTERM does.
    follower.wait(lambda e: isinstance(e, wire.Draining), "draining")
