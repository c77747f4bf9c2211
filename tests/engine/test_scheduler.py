"""Scheduler: one token budget per step, chunked prefill, priorities, preemption, aborts."""

from infleet.engine.core.block_manager import BlockManager
from infleet.engine.core.scheduler import ScheduledBatch, Scheduler, SchedulerConfig
from infleet.engine.core.sequence import Sequence, SequenceStatus
from infleet.engine.messages import SamplingParams


def make(num_blocks=64, block_size=4, max_num_seqs=8, budget=16) -> Scheduler:
    return Scheduler(SchedulerConfig(max_num_seqs, budget), BlockManager(num_blocks, block_size))


def req(rid, prompt_len, max_tokens=4, priority=0) -> Sequence:
    return Sequence(
        rid, [1000 + i for i in range(prompt_len)], SamplingParams(max_tokens=max_tokens), priority
    )


def step(s: Scheduler) -> ScheduledBatch:
    """One engine step without a model: every completed slice samples token 7."""
    batch = s.schedule()
    for seq, needs in zip(batch.seqs, s.advance(batch), strict=True):
        s.block_manager.cache_full_blocks(seq)
        if needs:
            seq.token_ids.append(7)
            if seq.num_output_tokens >= seq.params.max_tokens:
                s.finish(seq, "length")
    return batch


def test_long_prompt_is_chunked_and_never_stalls_decodes():
    s = make(budget=8)
    for i in range(3):
        s.add(req(f"short{i}", 2, max_tokens=20))
    step(s)  # three short prefills (6 tokens)
    s.add(req("long", 40, max_tokens=2))
    sizes = []
    for _ in range(8):
        batch = step(s)
        assert batch.num_tokens <= 8
        by_id = dict(zip((q.request_id for q in batch.seqs), batch.num_new_tokens, strict=True))
        assert all(by_id[f"short{i}"] == 1 for i in range(3))  # every decode, every step
        sizes.append(by_id.get("long", 0))
    assert sizes[:3] == [5, 5, 5] and sum(sizes) >= 40


def test_budget_and_max_num_seqs_bound_each_step():
    s = make(max_num_seqs=3, budget=100)
    for i in range(5):
        s.add(req(f"r{i}", 10))
    batch = step(s)
    assert len(batch) == 3 and s.num_running == 3 and s.num_waiting == 2


def test_priority_orders_admission():
    s = make(max_num_seqs=1)
    s.add(req("late-urgent", 3, priority=0))
    s.add(req("background", 3, priority=5))
    s.add(req("urgent", 3, priority=-1))
    order = []
    while s.has_work():
        for seq in step(s).seqs:
            if seq.request_id not in order:
                order.append(seq.request_id)
    assert order == ["urgent", "late-urgent", "background"]


def preempted_first(priorities: dict[str, int]) -> tuple[Scheduler, Sequence]:
    # 6 blocks of 4 tokens; three requests of 8 prompt tokens take 2 blocks each, so the
    # first decodes need a third block and someone must go.
    s = make(num_blocks=6, block_size=4, budget=64)
    s.watermark_blocks = 0
    for rid, prio in priorities.items():
        s.add(req(rid, 8, max_tokens=8, priority=prio))
    step(s)
    batch = step(s)
    assert len(batch.preempted) == 1
    return s, batch.preempted[0]


def test_preemption_by_recompute_picks_lowest_priority_then_newest():
    _, victim = preempted_first({"old": 0, "mid": 0, "new": 0})
    assert victim.request_id == "new"
    s, victim = preempted_first({"old-low": 1, "mid": 0, "new": 0})
    assert victim.request_id == "old-low"
    assert victim.status is SequenceStatus.WAITING and victim.num_computed_tokens == 0
    assert victim.num_output_tokens == 1  # its sampled token survives the recompute
    assert s.num_preemptions == 1
    while s.has_work():
        step(s)
    assert victim.num_output_tokens == 8 and victim.finish_reason == "length"
    assert s.block_manager.num_free_blocks == 6


def test_abort_frees_blocks_at_once():
    s = make(num_blocks=8)
    a, b = req("a", 10), req("b", 3)
    s.add(a)
    s.add(b)
    step(s)
    assert s.block_manager.num_free_blocks < 8
    s.finish(a, "abort")
    s.finish(b, "abort")
    assert s.block_manager.num_free_blocks == 8 and not s.has_work()
    w = req("w", 3)
    s.add(w)
    s.finish(w, "abort")  # still waiting: just leaves the queue
    assert s.num_waiting == 0 and w.finish_reason == "abort"


def test_prefix_hit_skips_cached_tokens():
    s = make(num_blocks=32, block_size=4, budget=64)
    first = req("first", 13, max_tokens=1)
    s.add(first)
    step(s)
    second = req("second", 13, max_tokens=1)
    s.add(second)
    batch = step(s)
    assert batch.num_new_tokens == [1] and second.num_cached_prompt_tokens == 12
