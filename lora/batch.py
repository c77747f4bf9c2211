"""The per-step layout of a flat batch by adapter: tokens grouped into fixed-size blocks,
each block belonging to one device slot (the segments of punica's SGMV, cut into tiles).

Built once per step on the host from each token's slot (-1 = base model) and shared by
every adapted layer of the forward: both the torch path and the Triton kernels walk the
same blocks, so a block is one small GEMM against one adapter's A (shrink) and B (expand).
Base-model tokens are in no block, so their rows are never touched. A segment wastes at
most `block_size - 1` padded rows, which repeat the block's first token with weight 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

BLOCK_SIZE = 16  # tokens per block: the smallest tile Triton's tl.dot takes


@dataclass(frozen=True, slots=True)
class LoRABatch:
    block_tokens: torch.Tensor  # [blocks, block_size] int64: rows of the flat batch
    block_slots: torch.Tensor  # [blocks] int64: the block's device slot
    block_lens: torch.Tensor  # [blocks] int32: real tokens in the block; 0 = an unused block
    valid: torch.Tensor  # [blocks, block_size, 1] in the compute dtype: 1 real, 0 padding
    num_tokens: int  # rows of the flat batch

    @property
    def block_size(self) -> int:
        return self.block_tokens.shape[1]

    @classmethod
    def build(
        cls,
        token_slots: torch.Tensor | Sequence[int],
        max_loras: int,
        dtype: torch.dtype,
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
        # Stable sort by slot: each adapter's tokens become one segment, in batch order.
        by_slot = slots[lora_rows]
        order = torch.sort(by_slot, stable=True).indices
        rows_sorted = lora_rows[order]
        counts = torch.bincount(by_slot, minlength=max_loras)
        blocks_per_slot = (counts + block_size - 1) // block_size
        num_blocks = int(blocks_per_slot.sum())
        if pad_blocks_to is not None and num_blocks > pad_blocks_to:
            raise ValueError(f"{num_blocks} LoRA blocks exceed the fixed {pad_blocks_to}")
        block_slot = torch.repeat_interleave(torch.arange(max_loras), blocks_per_slot)
        first_block = torch.cumsum(blocks_per_slot, 0) - blocks_per_slot
        segment_start = torch.cumsum(counts, 0) - counts
        # Offset of each block's first token within its slot's segment.
        within = (torch.arange(num_blocks) - first_block[block_slot]) * block_size
        lens = torch.clamp(counts[block_slot] - within, max=block_size)
        column = torch.arange(block_size)
        real = column[None, :] < lens[:, None]
        at = segment_start[block_slot, None] + within[:, None] + torch.where(real, column, 0)
        tokens = rows_sorted[at] if num_blocks else torch.zeros(0, block_size, dtype=torch.int64)
        pad = (pad_blocks_to or num_blocks) - num_blocks
        if pad:
            tokens = torch.cat([tokens, torch.zeros(pad, block_size, dtype=torch.int64)])
            block_slot = torch.cat([block_slot, torch.zeros(pad, dtype=torch.int64)])
            lens = torch.cat([lens, torch.zeros(pad, dtype=torch.int64)])
            real = torch.cat([real, torch.zeros(pad, block_size, dtype=torch.bool)])
        return cls(
            block_tokens=tokens.to(device, non_blocking=True),
            block_slots=block_slot.to(device, non_blocking=True),
            block_lens=lens.to(torch.int32).to(device, non_blocking=True),
            valid=real[..., None].to(dtype).to(device, non_blocking=True),
            num_tokens=len(slots),
        )
