"""Batched multi-LoRA in plain torch (the CPU path), as segmented GEMMs.

The step's LoRABatch lists the adapted tokens sorted by slot, so each adapter's tokens
form one segment; `F.grouped_mm` multiplies segment i by slot i's matrix in one call
(the punica / S-LoRA SGMV, without padding or copying weights per segment): shrink
`h = x_rows @ A_slot^T` ([rows, parts * rank]), then per packed part expand
`h_part @ B_slot_part^T`, and one `index_add_` puts the deltas on their rows. The op
count depends on the packing (1 to 3 parts), never on how many adapters the batch
holds: no Python loop runs over adapters or tokens.

grouped_mm wants every stride a multiple of 16 bytes: DeviceSlots rounds the slot rank up
to a multiple of 8 and needs layer sizes that are multiples of 8 (all real models).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from infleet.lora.batch import LoRABatch


def add_lora_torch(
    y: torch.Tensor,  # [T, out]: the base layer's output, updated in place
    x: torch.Tensor,  # [T, in]: the layer's input
    batch: LoRABatch,
    a: torch.Tensor,  # [slots, parts * rank, in]: scaling * A, zero-padded to `rank`
    b: torch.Tensor,  # [slots, out, rank]: B, zero-padded to `rank`
    part_sizes: Sequence[int],  # out_features of each packed part; sum == out
) -> None:
    rank, ends = b.shape[2], batch.group_ends
    h = F.grouped_mm(x.index_select(0, batch.rows), a.transpose(1, 2), offs=ends)
    deltas, offset = [], 0
    for part, size in enumerate(part_sizes):
        h_part = h[:, part * rank : (part + 1) * rank]
        b_part = b[:, offset : offset + size].transpose(1, 2)
        deltas.append(F.grouped_mm(h_part, b_part, offs=ends))
        offset += size
    # One add into y's contiguous rows (index_add_ into column slices of y would take a
    # strided path, measured several times slower than this concatenation).
    y.index_add_(0, batch.rows, deltas[0] if len(deltas) == 1 else torch.cat(deltas, dim=1))
