"""The router's small pure parts: prefix keys, the bounded index, the wire format, the
keys file, the tenant limiter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infleet.api import router_wire as wire
from infleet.api.router import RouterSpec
from infleet.api.tenants import KeysFile, KeysFileError, bearer_token, hash_key, parse_keys
from infleet.router.limits import TenantLimiter
from infleet.router.prefix_index import PrefixIndex
from infleet.router.prefix_keys import CHUNK_BYTES, canonical_prompt, prefix_keys, salt_of
from infleet.router.replicas import Endpoint, ReplicaSet

SYSTEM = "x" * (3 * CHUNK_BYTES)


def conversation(*turns: str) -> dict:
    messages = [{"role": "system", "content": SYSTEM}]
    for turn in turns:
        messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": "ok"}]
    return {"model": "m", "messages": messages}


def test_a_later_turn_extends_the_keys_of_the_earlier_one():
    salt = salt_of("t", "m")
    one = prefix_keys(salt, canonical_prompt(conversation("a" * 600)))
    two = prefix_keys(salt, canonical_prompt(conversation("a" * 600, "b" * 600)))
    assert len(one) == 5 and len(two) == 7  # 1,395 and 2,014 bytes
    assert two[: len(one)] == one


def test_keys_differ_by_tenant_model_and_content():
    body = conversation("question")
    base = prefix_keys(salt_of("t", "m"), canonical_prompt(body))
    assert base != prefix_keys(salt_of("u", "m"), canonical_prompt(body))
    assert base != prefix_keys(salt_of("t", "sql-adapter"), canonical_prompt(body))
    other = conversation("question")
    other["messages"][0]["content"] = "y" + SYSTEM[1:]
    assert not set(base) & set(prefix_keys(salt_of("t", "m"), canonical_prompt(other)))


def test_prompts_of_every_shape_have_keys():
    salt = salt_of("t", "m")
    assert len(prefix_keys(salt, canonical_prompt({"prompt": "z" * 1000}))) == 3
    assert len(prefix_keys(salt, canonical_prompt({"prompt": ["z" * 1000, "w"]}))) == 3
    assert len(prefix_keys(salt, canonical_prompt({"prompt": list(range(200))}))) == 3
    assert prefix_keys(salt, canonical_prompt({"prompt": "short"})) == []
    # Content parts and tools count too; junk shapes give no keys rather than an error.
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "q" * 600}]}]}
    assert len(prefix_keys(salt, canonical_prompt(parts))) == 2
    assert canonical_prompt({"messages": ["junk", None]}) == b"\x1e"
    assert canonical_prompt({"prompt": {"a": 1}}) == b""
    assert canonical_prompt({"messages": 5}) == canonical_prompt({"messages": "abc"}) == b"\x1e"
    assert len(prefix_keys(salt, b"q" * 10**6)) == 256  # capped


def test_index_matches_leading_keys_and_stays_bounded():
    index = PrefixIndex(capacity=10)
    index.record("a", [1, 2, 3, 4])
    assert index.matched("a", [1, 2, 3, 4, 5]) == 4
    assert index.matched("a", [1, 9, 3]) == 1  # a chain stops at its first gap
    assert index.matched("b", [1]) == 0
    for n in range(20):
        index.record("a", [100 + n])
    assert len(index) == 10  # the budget holds; the oldest conversation went first
    assert index.matched("a", [1]) == 0
    index.record("a", [7, 8, 9])
    index.set_capacity("a", 2)  # recorded last key first: the root survives a trim
    assert index.matched("a", [7, 8, 9]) == 2
    index.evict("a", [8])
    assert index.matched("a", [7, 8]) == 1
    index.replace("a", [5, 6])
    assert index.matched("a", [5, 6]) == 2 and index.matched("a", [7]) == 0
    index.forget("a")
    assert len(index) == 0


def test_published_load_less_this_routers_requests_that_ended_since():
    replicas = ReplicaSet()
    replicas.sync([Endpoint("a", "http://a"), Endpoint("b", "http://b")])
    replicas.started("a", [1], None)
    snap = wire.Snapshot(seq=0, epoch="e", model="m", waiting=1, running=0, kv_usage=0.1,
                         kv_capacity_tokens=4096)  # fmt: skip
    replicas.apply("a", snap, now=0.0)  # sampled while the request queued
    (a, _) = replicas.candidates([1], None, now=0.05)
    assert (a.waiting, a.running) == (1, 0)
    replicas.finished("a")  # it ended before the next 100 ms sample
    (a, _) = replicas.candidates([1], None, now=0.06)
    assert (a.waiting, a.running) == (0, 0)  # the next turn is not deterred by its own past
    replicas.apply("a", wire.Load(seq=1, waiting=2, running=3, kv_usage=0.2), now=0.1)
    (a, _) = replicas.candidates([1], None, now=0.11)
    assert (a.waiting, a.running) == (2, 3)  # a fresh sample stands as published


def test_wire_events_round_trip_and_bad_ones_are_named():
    snap = wire.Snapshot(
        seq=0, epoch="e", model="m", waiting=1, running=2, kv_usage=0.5,
        kv_capacity_tokens=4096, adapters=["x"], keys=["00000000000000ff"],
    )  # fmt: skip
    events = [snap, wire.Load(seq=1, waiting=0, running=0, kv_usage=0.0),
              wire.Stored(seq=2, keys=["0123456789abcdef"]), wire.Evicted(seq=3, keys=[]),
              wire.Cleared(seq=4), wire.Adapters(seq=5, adapters=[]), wire.Draining(seq=6)]  # fmt: skip
    for event in events:
        head, data = wire.encode_event(event).decode().rstrip("\n").split("\n")
        assert head == f"event: {event.type}"
        assert wire.parse_event(event.type, data.removeprefix("data: ")) == event
    with pytest.raises(wire.WireError, match="kv_usage"):
        wire.parse_event("load", '{"seq": 1, "waiting": 0, "running": 0, "kv_usage": 2}')
    with pytest.raises(wire.WireError, match="stored"):
        wire.parse_event("stored", '{"seq": 1, "keys": ["not-hex"]}')
    with pytest.raises(wire.WireError):
        wire.parse_event("gossip", '{"seq": 1}')
    with pytest.raises(wire.WireError):
        wire.parse_event("load", "[]")
    # A newer engine's extra fields are ignored, not refused.
    assert wire.parse_event("draining", '{"seq": 3, "reason": "spot"}') == wire.Draining(seq=3)


def test_keys_file_maps_keys_to_tenants_and_names_bad_entries(tmp_path: Path):
    table = parse_keys(
        {"team-a": [hash_key("k1"), hash_key("k2")],
         "ops": {"admin": True, "keys": [hash_key("k3")]}}
    )  # fmt: skip
    assert table[hash_key("k2")].name == "team-a"
    assert table[hash_key("k3")].admin
    bad = [
        ([], "mapping"),
        ({"a b": [hash_key("x")]}, "'a b'"),
        ({"t": []}, "non-empty"),
        ({"t": ["sha256:123"]}, "not a key hash"),
        ({"t": {"keys": [hash_key("x")], "role": "x"}}, "unknown field"),
        ({"t": [hash_key("x")], "u": [hash_key("x")]}, "also belongs to 't'"),
    ]
    for doc, message in bad:
        with pytest.raises(KeysFileError, match=message):
            parse_keys(doc)
    assert bearer_token("Bearer abc ") == "abc" and bearer_token("Basic abc") is None
    assert bearer_token(None) is None and bearer_token("Bearer") is None


def test_keys_file_reloads_and_keeps_the_last_good_one(tmp_path: Path):
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"a": [hash_key("one")]}))
    keys = KeysFile(path)
    assert keys.authenticate("one").name == "a"  # type: ignore[union-attr]
    assert not keys.refresh()
    path.write_text(yaml.safe_dump({"b": [hash_key("two")]}))
    assert keys.refresh()
    assert keys.authenticate("one") is None and keys.authenticate("two").name == "b"  # type: ignore[union-attr]
    path.write_text("b: [not-a-hash]")
    assert not keys.refresh()
    assert keys.authenticate("two").name == "b"  # type: ignore[union-attr]
    path.write_text("{")
    with pytest.raises(KeysFileError, match="not valid YAML"):
        KeysFile(path)


def test_tenant_limiter_rate_burst_and_concurrency():
    spec = RouterSpec.model_validate(
        {"tenantLimits": {"requestsPerSecond": 2, "burst": 3},
         "tenants": [{"tenant": "vip", "maxConcurrentRequests": 2}]}
    )  # fmt: skip
    lim = TenantLimiter(spec)
    got = [lim.admit("a", 0.0) for _ in range(4)]
    assert [g.admitted for g in got] == [True, True, True, False]
    assert got[3].reason == "rate" and got[3].retry_after == 1
    assert lim.admit("b", 0.0).admitted  # another tenant has its own bucket
    assert not lim.admit("a", 0.4).admitted  # 0.8 of a token back
    assert lim.admit("a", 0.6).admitted  # 1.2: one request
    assert lim.admit("vip", 0).admitted and lim.admit("vip", 0).admitted
    third = lim.admit("vip", 0)
    assert (third.admitted, third.reason) == (False, "concurrency")
    lim.release("vip")
    assert lim.admit("vip", 0).admitted
    assert lim.in_flight("vip") == 2
    slow = TenantLimiter(RouterSpec.model_validate({"tenantLimits": {"requestsPerSecond": 0.1}}))
    assert slow.admit("a", 0).admitted
    assert slow.admit("a", 0).retry_after == 10
