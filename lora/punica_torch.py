"""Batched multi-LoRA in plain torch (the CPU path, and the reference the kernels match).

Every block of the step's LoRABatch is one adapter's tokens, so the whole batch is two
batched GEMMs: shrink `h = x_block @ A_slot^T` ([blocks, block_size, parts * rank]) and,
per packed part, expand `y_rows += h_part @ B_slot_part^T`. The op count depends on the
packing (1 to 3 parts), never on how many adapters the batch holds: no Python loop runs
over adapters or tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from infleet.lora.batch import LoRABatch


def add_lora_torch(
    y: torch.Tensor,  # [T, out]: the base layer's output, updated in place
    x: torch.Tensor,  # [T, in]: the layer's input
    batch: LoRABatch,
    a: torch.Tensor,  # [slots, parts * rank, in]: scaling * A, zero-padded to `rank`
    b: torch.Tensor,  # [slots, out, rank]: B, zero-padded to `rank`
    part_sizes: Sequence[int],  # out_features of each packed part; sum == out
) -> None:
    num_blocks, block_size = batch.block_tokens.shape
    rank = b.shape[2]
    rows = batch.block_tokens.flatten()
    x_blocks = x.index_select(0, rows).view(num_blocks, block_size, x.shape[1])
    # Padding rows copy a real token; the 0 in `valid` keeps them out of the sum.
    h = torch.bmm(x_blocks, a.index_select(0, batch.block_slots).transpose(1, 2)) * batch.valid
    b_blocks = b.index_select(0, batch.block_slots)
    offset = 0
    for part, size in enumerate(part_sizes):
        h_part = h[:, :, part * rank : (part + 1) * rank]
        delta = torch.bmm(h_part, b_blocks[:, offset : offset + size].transpose(1, 2))
        y[:, offset : offset + size].index_add_(0, rows, delta.reshape(-1, size))
        offset += size
