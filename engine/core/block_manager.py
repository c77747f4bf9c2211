"""Paged KV cache bookkeeping: block allocation, reference counts and prefix caching.

Every full block gets a chained hash, H(parent hash, cache salt, its tokens), so a block's
hash names the whole prefix up to its end. A finished sequence's blocks go back to the free
list but keep their hash and contents: a later request with the same prefix takes them
back (a prefix-cache hit) until allocation needs the space, which evicts the least
recently freed block first (lazy LRU). A hit is checked against the block's stored tokens,
parent hash and salt, so a hash collision can never hand out the wrong KV.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from infleet.engine.core.sequence import Sequence


@dataclass(slots=True, eq=False)
class Block:
    block_id: int
    ref_count: int = 0
    hash: bytes | None = None
    # What the hash was computed from, kept to verify hits.
    parent_hash: bytes = b""
    cache_salt: str = ""
    token_ids: tuple[int, ...] = ()


def block_hash(
    parent_hash: bytes, cache_salt: str, token_ids: list[int] | tuple[int, ...]
) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(parent_hash)
    h.update(cache_salt.encode())
    h.update(b"\0")
    h.update(array("I", token_ids).tobytes())
    return h.digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(
                f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}"
            )
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # Blocks with ref_count 0, least recently freed first. Cached ones stay hashed.
        self.free: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))
        self.cached: dict[bytes, Block] = {}
        # Prefix-cache counters in tokens, like vLLM: queried prompt tokens and hits.
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.on_evict: Callable[[bytes], None] | None = None  # EngineCore: to the router feed
        # KV tiers (engine/core/kv_tiers.py): a hashed block that enters the free list or
        # is about to be overwritten, so its contents can be spilled below the device pool.
        self.on_spill: Callable[[bytes, int], None] | None = None

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    @property
    def usage(self) -> float:
        """Fraction of blocks held by live sequences (free cached blocks count as free)."""
        return 1.0 - len(self.free) / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def prefix_hashes(self, seq: Sequence, start: int, parent: bytes) -> list[bytes]:
        """Chained hashes of seq's full blocks from block `start` (whose parent hash is
        `parent`) up to the last one a prefix hit may cover (see lookup_prefix)."""
        hashes = []
        tokens, bs = seq.token_ids, self.block_size
        for i in range(start, (len(tokens) - 1) // bs):
            parent = block_hash(parent, seq.cache_salt, tokens[i * bs : (i + 1) * bs])
            hashes.append(parent)
        return hashes

    def lookup_prefix(self, seq: Sequence) -> list[Block]:
        """Cached blocks matching seq's leading full blocks; changes nothing.

        The last token is never taken from the cache: the step that computes it produces
        the logits of the first sampled token.
        """
        if not self.enable_prefix_caching:
            return []
        hits: list[Block] = []
        parent = b""
        tokens = seq.token_ids
        bs = self.block_size
        for i in range((len(tokens) - 1) // bs):
            chunk = tokens[i * bs : (i + 1) * bs]
            h = block_hash(parent, seq.cache_salt, chunk)
            block = self.cached.get(h)
            if block is None or not self._matches(block, parent, seq.cache_salt, chunk):
                break
            hits.append(block)
            parent = h
        return hits

    @staticmethod
    def _matches(block: Block, parent: bytes, salt: str, chunk: list[int]) -> bool:
        return (
            block.parent_hash == parent
            and block.cache_salt == salt
            and block.token_ids == tuple(chunk)
        )

    def admit(
        self, seq: Sequence, hits: list[Block], num_new_tokens: int, reserve: int = 0
    ) -> bool:
        """Give a waiting seq its cached prefix plus room for its first chunk, or nothing.

        `reserve` blocks must stay free afterwards (the scheduler's admission watermark)."""
        assert not seq.block_table
        num_cached = len(hits) * self.block_size
        need = self.blocks_needed(num_cached + num_new_tokens) - len(hits)
        # Taking a hit that sits in the free list removes it from the free pool.
        hits_in_free = sum(1 for b in hits if b.ref_count == 0)
        if need + reserve > len(self.free) - hits_in_free:
            return False
        for block in hits:
            self._take(block)
        seq.block_table = [b.block_id for b in hits]
        seq.block_hashes = [b.hash for b in hits]  # type: ignore[misc]
        seq.num_computed_tokens = num_cached
        self.prefix_queries += seq.num_tokens if self.enable_prefix_caching else 0
        self.prefix_hits += num_cached
        for _ in range(need):
            seq.block_table.append(self._allocate())
        return True

    def take_blocks(self, seq: Sequence, num_blocks: int, reserve: int = 0) -> bool:
        """Give seq (no blocks yet) `num_blocks` fresh blocks, keeping `reserve` free, or
        change nothing: room for a swapped-out sequence's KV to come back into."""
        assert not seq.block_table
        if num_blocks + reserve > len(self.free):
            return False
        seq.block_table = [self._allocate() for _ in range(num_blocks)]
        return True

    def allocate_slots(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Grow seq's block table to cover num_new_tokens more tokens, or change nothing."""
        need = self.blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        if need > len(self.free):
            return False
        for _ in range(need):
            seq.block_table.append(self._allocate())
        return True

    def cache_full_blocks(self, seq: Sequence, upto: int | None = None) -> None:
        """Hash seq's newly computed full blocks so later requests can reuse them; only
        blocks before token `upto` (the end of a step whose output has arrived: its
        tokens are known and its K/V written)."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        end = seq.num_computed_tokens if upto is None else min(upto, seq.num_computed_tokens)
        for i in range(len(seq.block_hashes), end // bs):
            parent = seq.block_hashes[-1] if seq.block_hashes else b""
            chunk = seq.token_ids[i * bs : (i + 1) * bs]
            h = block_hash(parent, seq.cache_salt, chunk)
            seq.block_hashes.append(h)
            block = self.blocks[seq.block_table[i]]
            # The same prefix computed twice (two identical prompts admitted in one step):
            # keep the first copy; this one is freed as an ordinary block.
            if h not in self.cached:
                block.hash, block.parent_hash, block.cache_salt = h, parent, seq.cache_salt
                block.token_ids = tuple(chunk)
                self.cached[h] = block

    def cache_restored(self, seq: Sequence, hashes: list[bytes]) -> None:
        """seq's blocks after its cached ones now hold the KV named by `hashes` (restored
        from a lower tier): count their tokens computed and offer them for reuse."""
        bs = self.block_size
        start = len(seq.block_hashes)
        assert seq.num_computed_tokens == start * bs
        seq.num_computed_tokens = (start + len(hashes)) * bs
        self.cache_full_blocks(seq)
        assert seq.block_hashes[start:] == hashes, "restored blocks hashed differently"

    def fork(self, parent: Sequence, child: Sequence) -> tuple[int, int] | None:
        """Give child (same tokens as parent, no blocks yet) parent's computed prompt: the
        full blocks shared, a fresh block for a partial last one. Returns (source, copy)
        block ids whose K/V the caller must copy, (-1, -1) if none; None (nothing changed)
        when no block is free."""
        assert not child.block_table
        computed = parent.num_computed_tokens
        full = computed // self.block_size
        partial = computed % self.block_size != 0
        if partial and not self.free:
            return None
        for block_id in parent.block_table[:full]:
            self._take(self.blocks[block_id])
        child.block_table = parent.block_table[:full]
        child.block_hashes = parent.block_hashes[:full]
        child.num_computed_tokens = computed
        if not partial:
            return -1, -1
        child.block_table.append(self._allocate())
        return parent.block_table[full], child.block_table[-1]

    def free_seq(self, seq: Sequence) -> None:
        """Release seq's blocks at once (finish, abort, preemption); tail blocks first so
        eviction takes a prefix's end before its shared start."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            assert block.ref_count >= 0, f"block {block_id} freed twice"
            if block.ref_count == 0:
                self.free[block_id] = None
                if block.hash is not None and self.on_spill is not None:
                    # Spilled as it leaves use, not only when evicted: the copy overlaps
                    # and the write-through puts it on disk before a crash can lose it.
                    self.on_spill(block.hash, block_id)
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed_tokens = 0

    def _take(self, block: Block) -> None:
        if block.ref_count == 0:
            del self.free[block.block_id]
        block.ref_count += 1

    def _allocate(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None:
            # Evict: the block's old contents are about to be overwritten.
            if self.cached.get(block.hash) is block:
                del self.cached[block.hash]
                if self.on_evict is not None:
                    self.on_evict(block.hash)
                if self.on_spill is not None:
                    self.on_spill(block.hash, block_id)
            block.hash, block.parent_hash, block.token_ids = None, b"", ()
        block.ref_count = 1
        return block_id
