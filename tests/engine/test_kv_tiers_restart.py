"""Warm restart of a real `infleet serve` (SmolLM2) on the same NVMe path: after SIGKILL
(no shutdown at all: the write-through put the blocks on disk) and after SIGTERM (the
core writes what is still queued within the grace period), the first request of a
returning conversation is restored from the NVMe tier, with the same greedy tokens."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.engine.test_sigterm import start_server

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
# Long enough for several 16-token blocks; each new conversation evicts the previous one
# from a device pool of ~11 blocks (8 MiB of SmolLM2's float32 KV).
FIRST = "You are a careful assistant. " * 16 + "Tell me about the history of tea in China."
OTHER = "You are a terse assistant. " * 16 + "List the planets of the solar system in order."


def tier_flags(path: Path) -> list[str]:
    return [
        "--kv-cache-memory", "8MiB", "--kv-dram-size", "64MiB", "--kv-nvme-size", "256MiB",
        "--kv-nvme-path", str(path), "--shutdown-grace-seconds", "20",
    ]  # fmt: skip


def complete(url: str, prompt: str) -> dict:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 4, "temperature": 0}
    r = httpx.post(url + "/v1/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def tier_metric(url: str, name: str, tier: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels.get("tier") == tier:
                return s.value
    return 0.0


def block_files(path: Path) -> int:
    return sum(1 for _ in path.rglob("*.kv"))


def serve_and_stop(path: Path, stop: signal.Signals, returning: str | None = None):
    """Start an engine on `path`; if `returning`, check that its first request is restored
    from NVMe; then serve a new conversation, evict it with another, and stop the engine
    with `stop`. Returns the new conversation's prompt and its answer."""
    proc, url, log = start_server(*tier_flags(path))
    try:
        startup = "".join(log)
        assert re.search(r"KV tiers: DRAM tier 64\.0 MiB: \d+ blocks of", startup), startup
        assert re.search(r"NVMe tier 25\d\.\d MiB at \S+: \d+ block files", startup), startup
        found = int(re.search(r"(\d+) found from an earlier run", startup).group(1))  # type: ignore[union-attr]
        if returning is not None:
            prompt, text = returning
            assert found >= 4
            again = complete(url, prompt)
            assert again["choices"][0]["text"] == text
            assert again["usage"]["prompt_tokens_details"]["cached_tokens"] >= 4 * 16
            assert tier_metric(url, "infleet:kv_tier_hits_total", "nvme") >= 4
        prompt = f"Conversation {stop.name}. " + FIRST
        answer = complete(url, prompt)["choices"][0]["text"]
        complete(url, OTHER)  # evicts the conversation's blocks (already spilled on free)
        before = block_files(path)
        if stop == signal.SIGKILL:  # nothing flushes after a SIGKILL: wait for the disk
            deadline = time.monotonic() + 60
            while block_files(path) < before + 4:
                assert time.monotonic() < deadline, "write-through wrote nothing"
                time.sleep(0.1)
        proc.send_signal(stop)
        assert proc.wait(timeout=60) == (-signal.SIGKILL if stop == signal.SIGKILL else 0)
    finally:
        if proc.poll() is None:
            proc.kill()
    return prompt, answer


def test_restart_on_the_same_nvme_path_restores_the_returning_conversation(tmp_path):
    """SIGKILL, then SIGTERM, then a third start: each restart's first request of the
    conversation served before the stop is restored from NVMe with the same tokens."""
    after_kill = serve_and_stop(tmp_path, signal.SIGKILL)
    after_term = serve_and_stop(tmp_path, signal.SIGTERM, returning=after_kill)
    proc, url, _ = start_server(*tier_flags(tmp_path))
    try:
        prompt, text = after_term
        again = complete(url, prompt)
        assert again["choices"][0]["text"] == text
        assert tier_metric(url, "infleet:kv_tier_hits_total", "nvme") >= 4
    finally:
        proc.kill()
        proc.wait(timeout=30)
