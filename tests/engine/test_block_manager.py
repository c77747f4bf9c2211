"""BlockManager: ref counts, chained-hash prefix caching verified against tokens, lazy LRU."""

from hypothesis import given, settings
from hypothesis import strategies as st

from infleet.engine.core.block_manager import BlockManager
from infleet.engine.core.sequence import Sequence
from infleet.engine.messages import SamplingParams


def seq(tokens, salt="") -> Sequence:
    return Sequence("r", list(tokens), SamplingParams(), cache_salt=salt)


def run_prefill(bm: BlockManager, s: Sequence) -> int:
    """Admit s with its prefix hit and compute its whole prompt; returns cached tokens."""
    hits = bm.lookup_prefix(s)
    cached = len(hits) * bm.block_size
    assert bm.admit(s, hits, s.num_tokens - cached)
    s.num_computed_tokens = s.num_tokens
    bm.cache_full_blocks(s)
    return cached


def test_allocation_and_free_track_ref_counts():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(range(10))
    assert bm.admit(a, [], 10)
    assert len(a.block_table) == 3 and bm.num_free_blocks == 5
    a.num_computed_tokens = 10
    assert bm.allocate_slots(a, 3)  # 13 tokens -> 4 blocks
    assert len(a.block_table) == 4 and bm.num_free_blocks == 4
    assert not bm.allocate_slots(a, 100)  # all or nothing
    assert len(a.block_table) == 4 and bm.num_free_blocks == 4
    bm.free_seq(a)
    assert bm.num_free_blocks == 8 and a.block_table == [] and bm.usage == 0.0


def test_repeated_prefix_hits_shared_blocks_and_counts_tokens():
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq(list(range(10)))
    assert run_prefill(bm, a) == 0
    b = seq([*list(range(8)), 99, 98, 97])
    assert run_prefill(bm, b) == 8
    assert b.block_table[:2] == a.block_table[:2]
    assert all(bm.blocks[i].ref_count == 2 for i in a.block_table[:2])
    assert (bm.prefix_queries, bm.prefix_hits) == (21, 8)
    # Shared blocks survive one owner's exit.
    bm.free_seq(a)
    assert all(bm.blocks[i].ref_count == 1 for i in b.block_table[:2])


def test_last_token_is_always_computed():
    bm = BlockManager(num_blocks=8, block_size=4)
    run_prefill(bm, seq(range(8)))
    again = seq(range(8))  # two full blocks, both cached: the second must be recomputed
    assert len(bm.lookup_prefix(again)) == 1


def test_freed_blocks_stay_cached_until_evicted_lru():
    bm = BlockManager(num_blocks=4, block_size=4)
    a = seq(range(5))  # caches one full block
    run_prefill(bm, a)
    bm.free_seq(a)
    b = seq(range(100, 109))  # needs 3 of 4 blocks: the cached one is freed last, kept
    run_prefill(bm, b)
    bm.free_seq(b)
    c = seq(range(5))
    assert run_prefill(bm, c) == 4
    bm.free_seq(c)
    assert run_prefill(bm, seq(range(100, 109))) == 8  # b's blocks were still cached too
    bm2 = BlockManager(num_blocks=4, block_size=4)
    run_prefill(bm2, first := seq(range(5)))
    bm2.free_seq(first)
    run_prefill(bm2, filler := seq(range(200, 216)))  # takes every block: evicts the cache
    bm2.free_seq(filler)
    assert run_prefill(bm2, seq(range(5))) == 0


def test_hit_is_verified_against_stored_tokens():
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(range(9))
    run_prefill(bm, a)
    # Simulate a hash collision: the stored block says it holds other tokens.
    bm.blocks[a.block_table[0]].token_ids = (7, 7, 7, 7)
    assert bm.lookup_prefix(seq(range(9))) == []


def test_cache_salt_separates_identical_tokens():
    bm = BlockManager(num_blocks=8, block_size=4)
    run_prefill(bm, seq(range(9), salt="tenant-a"))
    assert run_prefill(bm, seq(range(9), salt="tenant-b")) == 0
    assert run_prefill(bm, seq(range(9), salt="tenant-a")) == 8


def test_admit_reserve_and_all_or_nothing():
    bm = BlockManager(num_blocks=4, block_size=4)
    s = seq(range(12))
    assert not bm.admit(s, [], 12, reserve=2)
    assert s.block_table == [] and bm.num_free_blocks == 4
    assert bm.admit(s, [], 12, reserve=1)


def test_disabled_prefix_caching_never_hits():
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    run_prefill(bm, seq(range(9)))
    assert run_prefill(bm, seq(range(9))) == 0 and bm.prefix_queries == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 14)), max_size=40))
def test_random_traffic_keeps_pool_consistent(ops):
    """Blocks are either free (ref 0) or held exactly as often as block tables name them."""
    bm = BlockManager(num_blocks=10, block_size=4)
    live: list[Sequence] = []
    for kind, n in ops:
        if kind < 2:  # a new request with a prompt from a small alphabet (lots of sharing)
            s = seq([t % 3 for t in range(n)])
            hits = bm.lookup_prefix(s)
            if bm.admit(s, hits, s.num_tokens - len(hits) * 4):
                s.num_computed_tokens = s.num_tokens
                bm.cache_full_blocks(s)
                live.append(s)
        elif kind == 2 and live:  # decode n tokens
            s = live[n % len(live)]
            if bm.allocate_slots(s, n):
                s.token_ids += [1] * n
                s.num_computed_tokens += n
                bm.cache_full_blocks(s)
        elif live:
            bm.free_seq(live.pop(n % len(live)))
        held: dict[int, int] = {}
        for s in live:
            for b in s.block_table:
                held[b] = held.get(b, 0) + 1
        for block in bm.blocks:
            assert block.ref_count == held.get(block.block_id, 0)
            assert (block.ref_count == 0) == (block.block_id in bm.free)
        for h, block in bm.cached.items():
            assert block.hash == h
