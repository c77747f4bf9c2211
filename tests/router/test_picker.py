"""The picker: properties over random replica states (hypothesis), and the worked numbers
of docs/router.md."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from infleet.router.picker import Candidate, Weights, cost, pick, saturated

W = Weights()


@st.composite
def replica_states(draw: st.DrawFn, min_size: int = 1) -> list[Candidate]:
    n = draw(st.integers(min_size, 8))
    return [
        Candidate(
            name=f"r{i}",
            ready=draw(st.booleans()) or draw(st.booleans()),  # mostly ready
            draining=draw(st.integers(0, 4)) == 0,
            waiting=draw(st.integers(0, 24)),
            running=draw(st.integers(0, 64)),
            kv_usage=draw(st.none() | st.floats(0, 1)),
            cached_keys=draw(st.integers(0, 40)),
            has_adapter=draw(st.booleans()),
        )
        for i in range(n)
    ]


request_keys = st.integers(0, 40)


@settings(max_examples=300)
@given(replica_states(), request_keys, st.booleans(), st.integers(0, 2**64 - 1))
def test_draining_and_unready_replicas_are_never_picked(cands, keys, adapter, tie):
    d = pick(cands, request_keys=keys, wants_adapter=adapter, tie_key=tie)
    usable = [c for c in cands if c.ready and not c.draining]
    if not usable:
        assert d.replica is None and d.reason == "no_replica"
    else:
        assert d.replica in {c.name for c in usable}


@settings(max_examples=300)
@given(replica_states(), st.lists(st.booleans(), min_size=8, max_size=8), request_keys,
       st.integers(0, 2**64 - 1))  # fmt: skip
def test_a_replica_known_to_lack_the_adapter_is_picked_only_when_all_do(cands, lacks, keys, tie):
    cands = [replace(c, lacks_adapter=lack, has_adapter=c.has_adapter and not lack)
             for c, lack in zip(cands, lacks, strict=False)]  # fmt: skip
    d = pick(cands, request_keys=keys, wants_adapter=True, tie_key=tie)
    usable = [c for c in cands if c.ready and not c.draining]
    if not usable:
        return
    chosen = next(c for c in cands if c.name == d.replica)
    # Saturated or not: the engine answers 404 where the adapter is not loaded.
    assert not chosen.lacks_adapter or all(c.lacks_adapter for c in usable)
    # A request for the base model ignores adapters altogether.
    base = pick(cands, request_keys=keys, wants_adapter=False, tie_key=tie)
    assert base == pick([replace(c, lacks_adapter=False) for c in cands], request_keys=keys,
                        wants_adapter=False, tie_key=tie)  # fmt: skip


@settings(max_examples=300)
@given(replica_states(), request_keys, st.booleans(), st.integers(0, 2**64 - 1))
def test_a_saturated_replica_gets_nothing_while_another_is_not(cands, keys, adapter, tie):
    d = pick(cands, request_keys=keys, wants_adapter=adapter, tie_key=tie)
    usable = [c for c in cands if c.ready and not c.draining]
    if not usable:
        return
    chosen = next(c for c in cands if c.name == d.replica)
    if any(not saturated(c, W) for c in usable):
        assert not saturated(chosen, W)
        assert d.reason != "saturated"
        # ...and among the unsaturated it is the cheapest.
        pool = [c for c in usable if not saturated(c, W)]
        assert cost(chosen, keys, adapter, W) == min(cost(c, keys, adapter, W) for c in pool)
    else:
        assert d.reason == "saturated"


def alike(n: int, **fields) -> list[Candidate]:
    return [Candidate(name=f"r{i}", **fields) for i in range(n)]


@given(
    st.lists(st.integers(0, 40), min_size=2, max_size=8),
    st.integers(0, W.max_waiting - 1),
    st.integers(0, 2**64 - 1),
)
def test_prefix_affinity_between_equally_loaded_replicas(cached, waiting, tie):
    cands = [Candidate(name=f"r{i}", waiting=waiting, cached_keys=k) for i, k in enumerate(cached)]
    d = pick(cands, request_keys=40, tie_key=tie)
    assert d.cached_keys == max(cached)
    assert d.reason == ("prefix" if max(cached) > min(cached) else "load")


@given(st.lists(st.booleans(), min_size=2, max_size=8), st.integers(0, 2**64 - 1))
def test_adapter_affinity_between_equal_replicas(loaded, tie):
    cands = [Candidate(name=f"r{i}", has_adapter=h) for i, h in enumerate(loaded)]
    chosen = next(c for c in cands if c.name == pick(cands, request_keys=4, wants_adapter=True,
                                                    tie_key=tie).replica)  # fmt: skip
    assert chosen.has_adapter == any(loaded)


@given(st.lists(st.integers(0, 30), min_size=2, max_size=8), st.integers(0, 2**64 - 1))
def test_between_replicas_alike_but_for_load_the_least_loaded_wins(waiting, tie):
    cands = [Candidate(name=f"r{i}", waiting=w, cached_keys=5) for i, w in enumerate(waiting)]
    chosen = pick(cands, request_keys=10, tie_key=tie).replica
    assert next(c.waiting for c in cands if c.name == chosen) == min(waiting)


@settings(max_examples=300)
@given(replica_states(min_size=2), request_keys, st.booleans(), st.integers(0, 2**64 - 1))
def test_the_decision_is_monotone(cands, keys, adapter, tie):
    d = pick(cands, request_keys=keys, wants_adapter=adapter, tie_key=tie)
    if d.replica is None or d.reason == "saturated":
        return
    i = next(i for i, c in enumerate(cands) if c.name == d.replica)
    # More of the prefix cached where it already goes: it still goes there.
    more = list(cands)
    more[i] = replace(cands[i], cached_keys=min(cands[i].cached_keys + 3, keys))
    assert pick(more, request_keys=keys, wants_adapter=adapter, tie_key=tie).replica == d.replica
    # Another replica gets busier: the choice does not move to it.
    for j, c in enumerate(cands):
        if j != i:
            busier = list(cands)
            busier[j] = replace(c, waiting=c.waiting + 5)
            again = pick(busier, request_keys=keys, wants_adapter=adapter, tie_key=tie)
            assert again.replica == d.replica


@settings(max_examples=50, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 200),
    st.lists(st.integers(0, 5), min_size=300, max_size=300),
)
def test_a_popular_prefix_spreads_instead_of_hot_spotting(n, prefix_keys, completions):
    """Every request shares one prefix; each pick queues one request there and the
    replica then holds the prefix. Load keeps the spread within what the prefix is
    worth, and nobody saturates while another replica has room."""
    waiting = [0] * n
    cached = [0] * n
    worth = math.ceil(prefix_keys * W.key_tokens / W.queued_request_tokens)
    for step, done in enumerate(completions):
        cands = [
            Candidate(name=f"r{i}", waiting=waiting[i], cached_keys=cached[i]) for i in range(n)
        ]
        d = pick(cands, request_keys=prefix_keys, tie_key=7)
        i = int(d.replica[1:])  # type: ignore[index]
        if min(waiting) < W.max_waiting:
            assert waiting[i] < W.max_waiting
            assert waiting[i] - min(waiting) <= worth
        waiting[i] += 1
        cached[i] = prefix_keys
        j = (step + done) % n  # some queued request somewhere finishes
        waiting[j] = max(0, waiting[j] - (done > 1))


def test_ties_spread_new_conversations_and_keep_their_turns_together():
    cands = alike(4)
    picks = [pick(cands, request_keys=3, tie_key=k).replica for k in range(400)]
    counts = {name: picks.count(name) for name in {c.name for c in cands}}
    assert len(counts) == 4 and min(counts.values()) > 60  # ~100 each
    assert [pick(cands, request_keys=3, tie_key=k).replica for k in range(400)] == picks


def test_worked_numbers_of_the_docs():
    """docs/router.md, "Weights": a 2,048-token system prompt (32 keys) cached on A."""
    a = Candidate("A", cached_keys=32)
    b = Candidate("B")
    assert cost(a, 40, False, W) == 8 * 64 and cost(b, 40, False, W) == 40 * 64
    # A keeps the conversation until it has 4 more waiting requests than B...
    assert pick([replace(a, waiting=3), b], request_keys=40).replica == "A"
    assert pick([replace(a, waiting=4), b], request_keys=40, tie_key=0).reason in ("prefix", "load")
    assert pick([replace(a, waiting=5), b], request_keys=40).replica == "B"
    # ...and a 32,768-token document (512 keys) would hold it past 60 waiting, but the
    # cut-off at 16 waiting sends it elsewhere first.
    big = Candidate("A", cached_keys=512, waiting=16)
    assert pick([big, Candidate("B", waiting=0)], request_keys=512).replica == "B"
    assert pick([replace(big, waiting=15), Candidate("B")], request_keys=512).replica == "A"
    # An adapter that B lacks is worth 8 waiting requests to A.
    a2, b2 = Candidate("A", has_adapter=True, waiting=8), Candidate("B")
    assert pick([a2, b2], request_keys=0, wants_adapter=True).reason in ("adapter", "load")
    assert pick([replace(a2, waiting=7), b2], request_keys=0, wants_adapter=True).replica == "A"
    assert pick([replace(a2, waiting=9), b2], request_keys=0, wants_adapter=True).replica == "B"
    # KV at 90 % is saturation too.
    full = Candidate("A", cached_keys=32, kv_usage=0.9)
    assert pick([full, b], request_keys=40).replica == "B"
