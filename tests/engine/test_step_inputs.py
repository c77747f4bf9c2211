"""ModelRunner.prepare: the packed, vectorized step inputs equal a plain per-token build,
and bad slices still get the per-slice errors (the first bad slice's)."""

from __future__ import annotations

import random

import pytest
import torch

from infleet.engine.attention import AttentionContext
from infleet.engine.core.runner import ModelRunner, SeqSlice
from tests.engine.kernel_cases import tiny_loaded

MAX_LEN, NUM_BLOCKS, VOCAB = 1024, 512, 128


def reference_inputs(batch: list[SeqSlice], block_size: int) -> dict[str, list]:
    """The step's inputs built the obvious way: Python lists, one token at a time."""
    ids: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    cu_seqlens = [0]
    for s in batch:
        span = range(s.start_pos, s.start_pos + len(s.token_ids))
        ids += s.token_ids
        positions += span
        slots += [s.block_table[p // block_size] * block_size + p % block_size for p in span]
        cu_seqlens.append(len(ids))
    width = max(len(s.block_table) for s in batch)
    return {
        "input_ids": ids,
        "positions": positions,
        "slot_mapping": slots,
        "cu_seqlens_q": cu_seqlens,
        "context_lens": [s.start_pos + len(s.token_ids) for s in batch],
        "block_tables": [s.block_table + [-1] * (width - len(s.block_table)) for s in batch],
        "query_lens_host": [len(s.token_ids) for s in batch],
    }


def as_lists(input_ids: torch.Tensor, ctx: AttentionContext) -> dict[str, list]:
    dtypes = {
        "input_ids": (input_ids, torch.int64),
        "positions": (ctx.positions, torch.int64),
        "slot_mapping": (ctx.slot_mapping, torch.int64),
        "cu_seqlens_q": (ctx.cu_seqlens_q, torch.int32),
        "context_lens": (ctx.context_lens, torch.int32),
        "block_tables": (ctx.block_tables, torch.int32),
    }
    for name, (tensor, dtype) in dtypes.items():
        assert tensor.dtype == dtype and tensor.device == input_ids.device, name
    assert ctx.context_lens_host == ctx.context_lens.tolist()
    return {name: t.tolist() for name, (t, _) in dtypes.items()} | {
        "query_lens_host": ctx.query_lens_host
    }


def random_batch(rng: random.Random, block_size: int) -> list[SeqSlice]:
    """Decodes, first prompt chunks and later chunks side by side; tables scattered over
    the pool, some with spare blocks past the ones the step uses (ragged widths)."""
    batch = []
    for _ in range(rng.randint(1, 24)):
        kind = rng.choice(["decode", "decode", "first-chunk", "chunk"])
        q_len = 1 if kind == "decode" else rng.randint(1, 70)
        longest = min(MAX_LEN, NUM_BLOCKS * block_size)
        start = 0 if kind == "first-chunk" else rng.randint(0, longest - q_len)
        needed = -(-(start + q_len) // block_size)
        blocks = min(needed + rng.choice([0, 0, 1, 3]), NUM_BLOCKS)
        tokens = [rng.randrange(VOCAB) for _ in range(q_len)]
        batch.append(SeqSlice(tokens, start, rng.sample(range(NUM_BLOCKS), blocks)))
    return batch


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded(max_position_embeddings=MAX_LEN, vocab_size=VOCAB)


@pytest.mark.parametrize("block_size", [1, 16, 32])
def test_prepared_inputs_equal_a_reference_construction(loaded, block_size):
    runner = ModelRunner(loaded, num_blocks=NUM_BLOCKS, block_size=block_size,
                         attention_backend="reference")  # fmt: skip
    rng = random.Random(block_size)
    steps = []
    for _ in range(30):
        batch = random_batch(rng, block_size)
        prepared = runner.prepare(batch)
        assert as_lists(*prepared) == reference_inputs(batch, block_size)
        steps.append((batch, prepared))
    # Each step's tensors stay intact while later steps are prepared (no shared buffer).
    for batch, prepared in steps:
        assert as_lists(*prepared) == reference_inputs(batch, block_size)


def test_spare_blocks_past_the_used_ones_are_passed_through_unchecked(loaded):
    runner = ModelRunner(loaded, num_blocks=8, block_size=4, attention_backend="reference")
    batch = [SeqSlice([5, 6], 3, [2, 7, 99, -5]), SeqSlice([9], 0, [1])]  # uses 2 and 1 blocks
    assert as_lists(*runner.prepare(batch)) == reference_inputs(batch, 4)
    with pytest.raises(ValueError, match="bad id"):  # a spare id that no int32 holds
        runner.prepare([SeqSlice([5], 0, [1, 2**40])])


@pytest.mark.parametrize(
    "bad,message",
    [
        (SeqSlice([1] * 5, 0, [3, -1]), r"block_table \[3, -1\] has ids outside \[0, 8\)"),
        (SeqSlice([1], 0, [2**40]), r"ids outside \[0, 8\)"),
        (SeqSlice([1, 2**70], 0, [0]), r"outside the vocabulary \[0, 128\)"),
        (SeqSlice([1], -1, [0]), "start_pos >= 0"),
        (SeqSlice([1], 2**40, [0]), f"beyond max_model_len {MAX_LEN}"),
    ],
    ids=["used-minus-one", "huge-block", "huge-token", "negative-start", "huge-start"],
)
def test_the_first_bad_slice_names_the_error(loaded, bad, message):
    runner = ModelRunner(loaded, num_blocks=8, block_size=4, attention_backend="reference")
    later_bad = SeqSlice([VOCAB], 0, [1])  # out of vocabulary, but after the first bad one
    good = SeqSlice([4, 5, 6], 0, [0])
    for batch in ([good, bad], [good, bad, later_bad]):
        with pytest.raises(ValueError, match=message):
            runner.prepare(batch)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        runner.prepare([good, later_bad, bad])
