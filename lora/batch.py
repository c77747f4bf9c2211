"""The per-step layout of a flat batch by adapter, shared by every adapted layer.

Built once per step on the host from each token's slot (-1 = base model): the adapted
tokens sorted by slot (a stable sort, so each adapter's tokens form one segment in batch
order) with each segment's end, for the torch path's grouped GEMMs; and the same segments
cut into fixed-size blocks, each block one slot's tokens, for the Triton kernels' tiles.
Base-model tokens are in neither, so their rows are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

BLOCK_SIZE = 16  # tokens per Triton tile: the smallest tl.dot takes


@dataclass(frozen=True, slots=True)
class LoRABatch:
    rows: torch.Tensor  # [N] int64: the adapted tokens' rows, sorted by slot
    group_ends: torch.Tensor  # [max_loras] int32: slot i's segment ends at rows[group_ends[i]]
    block_tokens: torch.Tensor  # [blocks, block_size] int64: rows (padding repeats the first)
    block_slots: torch.Tensor  # [blocks] int64: the block's device slot
    block_lens: torch.Tensor  # [blocks] int32: real tokens in the block; 0 = an unused block
    num_tokens: int  # rows of the flat batch

    @classmethod
    def build(
        cls,
        token_slots: torch.Tensor | Sequence[int],
        max_loras: int,
        device: torch.device | str = "cpu",
        block_size: int = BLOCK_SIZE,
        pad_blocks_to: int | None = None,
    ) -> LoRABatch | None:
        """From each token's slot (-1: base model). None when no token uses an adapter and
        no fixed block count is asked for (CUDA graphs pass `pad_blocks_to`)."""
        slots = torch.as_tensor(token_slots, dtype=torch.int64, device="cpu")
        if len(slots) and int(slots.max()) >= max_loras:
            raise ValueError(f"slot {int(slots.max())} of {max_loras} device slots")
        lora_rows = torch.nonzero(slots >= 0).flatten()
        if len(lora_rows) == 0 and pad_blocks_to is None:
            return None
        by_slot = slots[lora_rows]
        rows = lora_rows[torch.sort(by_slot, stable=True).indices]
        counts = torch.bincount(by_slot, minlength=max_loras)
        segment_end = torch.cumsum(counts, 0)
        tokens, block_slots, lens = _blocks(rows, counts, segment_end - counts, block_size)
        pad = 0 if pad_blocks_to is None else pad_blocks_to - len(block_slots)
        if pad < 0:
            raise ValueError(f"{len(block_slots)} LoRA blocks exceed the fixed {pad_blocks_to}")
        if pad:  # unused blocks: length 0, so the kernels return at once
            tokens = torch.cat([tokens, torch.zeros(pad, block_size, dtype=torch.int64)])
            block_slots = torch.cat([block_slots, torch.zeros(pad, dtype=torch.int64)])
            lens = torch.cat([lens, torch.zeros(pad, dtype=torch.int64)])

        def put(t: torch.Tensor, dtype: torch.dtype = torch.int64) -> torch.Tensor:
            return t.to(dtype).to(device, non_blocking=True)

        return cls(
            rows=put(rows),
            group_ends=put(segment_end, torch.int32),
            block_tokens=put(tokens),
            block_slots=put(block_slots),
            block_lens=put(lens, torch.int32),
            num_tokens=len(slots),
        )


def _blocks(
    rows: torch.Tensor, counts: torch.Tensor, starts: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each slot's segment of `rows` cut into blocks of `block_size` tokens: the blocks'
    rows (a partial block repeats its first row), slots and real lengths."""
    per_slot = (counts + block_size - 1) // block_size
    num_blocks = int(per_slot.sum())
    block_slots = torch.repeat_interleave(torch.arange(len(counts)), per_slot)
    first_block = torch.cumsum(per_slot, 0) - per_slot
    within = (torch.arange(num_blocks) - first_block[block_slots]) * block_size
    lens = torch.clamp(counts[block_slots] - within, max=block_size)
    column = torch.arange(block_size)
    column = torch.where(column[None, :] < lens[:, None], column, 0)
    return rows[starts[block_slots, None] + within[:, None] + column], block_slots, lens
