"""Continuous batching: which sequences compute how many tokens in the next step.

Every step has one token budget (`max_num_batched_tokens`) shared by everything: running
decodes are served first (one token each; in turns when they outnumber the budget, so
every one progresses), then running prefills continue with chunks of
what is left, then waiting requests are admitted in priority order with a first chunk.
A long prompt therefore takes at most the leftover budget per step and never stalls the
streams already decoding. When the KV pool runs dry, the least urgent running sequence
(highest priority value, then newest) is preempted: its blocks are freed and it goes back
to the queue to be recomputed later (its prefix is usually still cached).

Head-of-line: a waiting request that does not fit the pool now may be bypassed by smaller
ones behind it, but only `MAX_BYPASS` times in a row; then admission stops until the
pool has drained enough for it (with nothing running the whole pool is its, and a request
that cannot fit even then was refused at validation). No starvation, and no hang.

Under async scheduling a sequence may be scheduled while its last sampled token is still
on the device (a PLACEHOLDER in its token ids): it simply decodes that token next. One
that will surely end by length when that token arrives is not scheduled again, and one
with a constraint waits for its token (its mask needs it).

With KV tiers (engine/core/kv_tiers.py), a waiting request whose prefix is held below the
device pool is admitted with blocks for it but no tokens: it waits in RESTORING, outside
the running batch and its budget, and joins the batch once its copies are done.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infleet.engine.core.block_manager import BlockManager
from infleet.engine.core.sequence import Sequence, SequenceStatus

if TYPE_CHECKING:
    from infleet.engine.core.kv_tiers import KvTiers

# Admissions that may pass a waiting request too large for the pool's free blocks.
MAX_BYPASS = 8


@dataclass(slots=True)
class SchedulerConfig:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048


@dataclass(slots=True)
class ScheduledBatch:
    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    def completes(self, i: int) -> bool:
        """Whether slice i reaches the end of its sequence (its logits give a new token)."""
        seq = self.seqs[i]
        return seq.num_computed_tokens + self.num_new_tokens[i] == seq.num_tokens


class Scheduler:
    def __init__(self, config: SchedulerConfig, block_manager: BlockManager):
        self.config = config
        self.block_manager = block_manager
        self.waiting: list[Sequence] = []  # sorted by order_key
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        # Admission keeps ~1% of the pool free so that decodes of running sequences do not
        # immediately preempt a just-admitted request (thrashing); not when nothing runs.
        self.watermark_blocks = block_manager.num_blocks // 100
        self._blocked: Sequence | None = None  # the waiting request being bypassed
        self._bypasses = 0
        self._decode_turn = 0  # rotates decodes when they outnumber the token budget
        self.tiers: KvTiers | None = None  # set by EngineCore when --kv-dram-size is given
        # (running, waiting) -> the waiting sequences another rule holds back this step:
        # LoRA's slot rule (engine/core/lora_state.py); such a sequence is simply passed.
        self.hold_back: Callable[[list[Sequence], list[Sequence]], set[Sequence]] | None = None

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_restoring(self) -> int:
        return self.tiers.num_restoring if self.tiers is not None else 0

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.num_restoring)

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        bisect.insort(self.waiting, seq, key=lambda s: s.order_key)

    def finish(self, seq: Sequence, reason: str) -> None:
        """End seq (stop, length, abort, error) and free its blocks now."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        if seq is self._blocked:
            self._blocked = None
        if not (self.tiers is not None and self.tiers.abandon(seq)):
            self.block_manager.free_seq(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason

    def schedule(self) -> ScheduledBatch:
        budget = self.config.max_num_batched_tokens
        scheduled: dict[Sequence, int] = {}
        preempted: list[Sequence] = []
        if self.tiers is not None:
            for seq in self.tiers.finished():
                if seq.num_preemptions == 0:
                    seq.num_cached_prompt_tokens = seq.num_computed_tokens
                seq.status = SequenceStatus.RUNNING
                self.running.append(seq)
        self.running.sort(key=lambda s: s.order_key)
        ready = [s for s in self.running if schedulable(s)]
        decodes = [s for s in ready if s.num_uncomputed_tokens == 1]
        if len(decodes) > budget:
            # More decodes than tokens: serve them in turns, so each one progresses.
            turn = self._decode_turn % len(decodes)
            decodes = decodes[turn:] + decodes[:turn]
            self._decode_turn = turn + budget
        prefills = [s for s in ready if s.num_uncomputed_tokens > 1]
        for seq in decodes + prefills:
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING:  # preempted earlier in this step
                continue
            n = min(seq.num_uncomputed_tokens, budget)
            while not self.block_manager.allocate_slots(seq, n):
                victim = max(self.running, key=lambda s: s.order_key)
                self._preempt(victim)
                preempted.append(victim)
                budget += scheduled.pop(victim, 0)
                if victim is seq:
                    break
            else:
                scheduled[seq] = n
                budget -= n
        # Admitting while preempting would only evict the newcomer again next step.
        i = 0
        passed_blocked = False  # the oldest request that did not fit is behind us
        held: set[Sequence] = set()
        if self.hold_back is not None and self.waiting and not preempted:
            held = self.hold_back(self.running, self.waiting)
        while not preempted and i < len(self.waiting) and budget > 0:
            if len(self.running) + self.num_restoring >= self.config.max_num_seqs:
                break
            if passed_blocked and self._bypasses >= MAX_BYPASS:
                break  # no one else passes it: the pool drains for it
            seq = self.waiting[i]
            if seq in held:
                i += 1
                continue
            reserve = self.watermark_blocks if self.running else 0
            swapped = self.tiers.swapped_blocks(seq) if self.tiers is not None else 0
            below: list[bytes] = []
            n = num_cached = 0
            if swapped:  # swapped out: room for its blocks to come back, nothing computed
                admitted = self.block_manager.take_blocks(seq, swapped, reserve)
            else:
                hits = self.block_manager.lookup_prefix(seq)
                below = self.tiers.lookup(seq, hits) if self.tiers is not None else []
                num_cached = len(hits) * self.block_manager.block_size
                # A restore's first step computes nothing: it needs room for its blocks.
                n = len(below) * self.block_manager.block_size or min(
                    seq.num_tokens - num_cached, budget
                )
                admitted = self.block_manager.admit(seq, hits, n, reserve=reserve)
            if not admitted:
                if self._blocked is None:
                    self._blocked, self._bypasses = seq, 0
                passed_blocked = passed_blocked or seq is self._blocked
                i += 1
                continue
            if seq is self._blocked:
                self._blocked = None
            elif passed_blocked:
                self._bypasses += 1
            self.waiting.pop(i)
            if seq.num_preemptions == 0:
                seq.num_cached_prompt_tokens = num_cached
            if below or swapped:
                assert self.tiers is not None
                self.tiers.begin(seq, below)  # a swapped sequence: its swap-in
                continue
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            scheduled[seq] = n
            budget -= n
        return ScheduledBatch(list(scheduled), list(scheduled.values()), preempted)

    def _preempt(self, seq: Sequence) -> None:
        """Free seq's blocks and queue it again: its KV swapped to DRAM when the tiers
        find that cheaper (counted apart), else recomputed when it resumes."""
        self.running.remove(seq)
        if self.tiers is None or not self.tiers.swap_out(seq):
            self.num_preemptions += 1
        self.block_manager.free_seq(seq)
        seq.num_preemptions += 1
        self.add(seq)

    def advance(self, batch: ScheduledBatch) -> list[bool]:
        """Count the batch's tokens as computed (the device will have computed them before
        anything reads them); returns, per slice, whether it needs a sample."""
        needs_sample = [batch.completes(i) for i in range(len(batch))]
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            seq.num_computed_tokens += n
        return needs_sample


def micro_batches(num_new_tokens: list[int], parts: int) -> list[tuple[int, int]]:
    """Pipeline parallel: a step's sequences cut into up to `parts` contiguous micro-batches
    of about equal tokens, as (first, end) index pairs. Every rank computes the same cut
    from the step's lengths. Contiguous ranges keep the logits rows in the step's order."""
    n = len(num_new_tokens)
    parts = max(1, min(parts, n))
    total = sum(num_new_tokens)
    bounds, first, acc = [], 0, 0
    for i, tokens in enumerate(num_new_tokens):
        acc += tokens
        left = parts - len(bounds) - 1  # cuts still to make after this one
        # cut after i once this part has its share (or only one sequence per later part
        # is left), always leaving a sequence for each later part
        share = acc * parts >= total * (len(bounds) + 1)
        if left > 0 and n - i - 1 >= left and (share or n - i - 1 == left):
            bounds.append((first, i + 1))
            first = i + 1
    bounds.append((first, n))
    return bounds


def schedulable(seq: Sequence) -> bool:
    """Whether a running sequence can be given work now (see the module docstring)."""
    waits = seq.num_output_tokens >= seq.params.max_tokens or seq.constraint is not None
    return not (seq.num_pending and waits)
