"""Preemption by swap or by recompute: a pure choice by estimated time.

Recompute throws a sequence's KV away and prefills its tokens again when it resumes; swap
copies its blocks to DRAM now and back later. Both rates are the engine's own measurements
(prefill tokens per second, host<->device bytes per second), so the choice follows the
hardware: on a GPU, moving a block's bytes twice is usually far cheaper than recomputing
its tokens; on a CPU both are memory-bound and the numbers decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Preemption = Literal["swap", "recompute"]


@dataclass(frozen=True, slots=True)
class PreemptionCosts:
    prefill_tokens_per_s: float  # measured recompute speed
    swap_bytes_per_s: float  # measured device<->DRAM copy speed, one direction

    def __post_init__(self) -> None:
        if self.prefill_tokens_per_s <= 0 or self.swap_bytes_per_s <= 0:
            raise ValueError(f"rates must be positive, got {self}")


def recompute_seconds(num_tokens: int, costs: PreemptionCosts) -> float:
    return num_tokens / costs.prefill_tokens_per_s


def swap_seconds(num_bytes: int, costs: PreemptionCosts) -> float:
    """Out now and back in later: the bytes cross twice."""
    return 2 * num_bytes / costs.swap_bytes_per_s


def choose_preemption(
    *,
    num_computed_tokens: int,
    num_blocks: int,
    bytes_per_block: int,
    dram_room_blocks: int,
    costs: PreemptionCosts,
) -> Preemption:
    """Swap when DRAM has room for every block and moving them is faster than
    recomputing the tokens they hold; recompute otherwise (and when nothing is computed)."""
    if num_computed_tokens <= 0 or num_blocks <= 0 or num_blocks > dram_room_blocks:
        return "recompute"
    swap = swap_seconds(num_blocks * bytes_per_block, costs)
    return "swap" if swap < recompute_seconds(num_computed_tokens, costs) else "recompute"
