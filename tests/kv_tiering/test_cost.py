"""Preemption by swap or recompute: the choice follows the measured rates."""

import pytest

from infleet.kv_tiering import PreemptionCosts, choose_preemption
from infleet.kv_tiering.cost import recompute_seconds, swap_seconds

MIB = 2**20
# An 8B model on an H100: ~10k prefill tok/s, ~20 GB/s over PCIe; 2 MiB blocks of 16 tokens.
GPU = PreemptionCosts(prefill_tokens_per_s=10_000, swap_bytes_per_s=20e9)
# A slow host link against a fast prefill: moving the bytes twice loses.
SLOW_LINK = PreemptionCosts(prefill_tokens_per_s=100_000, swap_bytes_per_s=1e9)


def choose(costs, tokens=1600, blocks=100, room=1000):
    return choose_preemption(
        num_computed_tokens=tokens,
        num_blocks=blocks,
        bytes_per_block=2 * MIB,
        dram_room_blocks=room,
        costs=costs,
    )


def test_swap_when_moving_bytes_beats_recomputing_tokens():
    # 1,600 tokens: 160 ms to recompute; 2 x 200 MiB at 20 GB/s: ~21 ms.
    assert swap_seconds(100 * 2 * MIB, GPU) < recompute_seconds(1600, GPU)
    assert choose(GPU) == "swap"


def test_recompute_when_the_link_is_slow():
    # 16 ms to recompute; 2 x 200 MiB at 1 GB/s: ~420 ms.
    assert choose(SLOW_LINK) == "recompute"


def test_recompute_when_dram_has_no_room_or_nothing_is_computed():
    assert choose(GPU, room=99) == "recompute"
    assert choose(GPU, tokens=0, blocks=0) == "recompute"


def test_rates_must_be_positive():
    with pytest.raises(ValueError, match="rates must be positive"):
        PreemptionCosts(prefill_tokens_per_s=0, swap_bytes_per_s=1)
