"""The per-step attention context: how the flat batch splits into sequences.

The runner sets it before each forward and clears it after, so model code never sees
batching (the nano-vllm pattern). Layout is pinned in docs/contracts.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class AttentionContext:
    cu_seqlens_q: torch.Tensor  # int32 [B+1]: sequence i owns flat tokens cu[i]:cu[i+1]
    context_lens: torch.Tensor  # int32 [B]: KV length of each sequence after this step
    block_tables: torch.Tensor  # int32 [B, max_blocks], padded with -1
    slot_mapping: torch.Tensor  # int64 [T]: block_id * block_size + offset of each new token
    positions: torch.Tensor  # int64 [T]
    block_size: int
    # Host copies of the lengths, so the torch backends split the batch without a device sync.
    query_lens_host: list[int]
    context_lens_host: list[int]

    @property
    def num_seqs(self) -> int:
        return len(self.query_lens_host)


_current: AttentionContext | None = None


def set_context(ctx: AttentionContext) -> None:
    global _current
    _current = ctx


def get_context() -> AttentionContext:
    if _current is None:
        raise RuntimeError("no attention context: run the model through ModelRunner.forward")
    return _current


def reset_context() -> None:
    global _current
    _current = None
