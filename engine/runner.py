"""ModelRunner: owns the paged KV pool and turns a list of sequence slices into one forward.

This is the one place where a step's tensors are prepared (token ids, positions, slot
mapping, block tables); the attention context carries them to every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from infleet.engine.attention import (
    AttentionContext,
    PagedAttention,
    reset_context,
    select_backend,
    set_context,
)
from infleet.engine.loader import LoadedModel
from infleet.engine.model_config import ModelConfig


@dataclass(slots=True)
class SeqSlice:
    token_ids: list[
        int
    ]  # tokens whose K/V this step computes: a prompt chunk, or the last sampled token
    start_pos: int  # tokens of this sequence already in the KV cache (position of token_ids[0])
    block_table: list[int]  # physical block ids covering positions [0, start_pos + len(token_ids))


def resolve_kv_dtype(kv_cache_dtype: str, model_dtype: torch.dtype) -> torch.dtype:
    if kv_cache_dtype == "auto":
        return model_dtype
    raise ValueError(
        f"kv cache dtype {kv_cache_dtype!r} is not supported yet; use 'auto' (the model dtype)"
    )


class ModelRunner:
    def __init__(
        self,
        loaded: LoadedModel,
        *,
        num_blocks: int,
        block_size: int = 16,
        kv_cache_dtype: str = "auto",
        attention_backend: str = "auto",
    ) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(
                f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}"
            )
        self.model = loaded.model
        self.config = loaded.config
        self.device = loaded.device
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.max_model_len = loaded.config.max_position_embeddings
        self.kv_dtype = resolve_kv_dtype(kv_cache_dtype, loaded.dtype)
        self.backend = select_backend(attention_backend, loaded.device)
        c = loaded.config
        # One allocation for every layer's K and V; zeroed so that padded reads of unused
        # slots are finite (a masked-out NaN would still poison the softmax-weighted sum).
        self.kv_cache = torch.zeros(
            2, c.num_layers, num_blocks, block_size, c.num_kv_heads, c.head_dim,
            dtype=self.kv_dtype, device=self.device,
        )  # fmt: skip
        layers = [m for m in self.model.modules() if isinstance(m, PagedAttention)]
        for i, attn in enumerate(layers):
            attn.k_cache, attn.v_cache = self.kv_cache[0, i], self.kv_cache[1, i]
            attn.backend = self.backend

    @staticmethod
    def kv_bytes_per_block(
        config: ModelConfig, block_size: int, kv_cache_dtype: torch.dtype
    ) -> int:
        element = torch.empty(0, dtype=kv_cache_dtype).element_size()
        return 2 * config.num_layers * block_size * config.num_kv_heads * config.head_dim * element

    def _check(self, s: SeqSlice) -> None:
        end = s.start_pos + len(s.token_ids)
        if not s.token_ids or s.start_pos < 0:
            raise ValueError(f"a slice needs tokens and start_pos >= 0, got {s}")
        if end > self.max_model_len:
            raise ValueError(f"position {end - 1} is beyond max_model_len {self.max_model_len}")
        needed = -(-end // self.block_size)
        table = s.block_table[:needed]
        if len(table) < needed:
            raise ValueError(
                f"block_table has {len(s.block_table)} blocks; {end} tokens need {needed}"
            )
        if min(table) < 0 or max(table) >= self.num_blocks:
            raise ValueError(f"block_table {table} has ids outside [0, {self.num_blocks})")
        if min(s.token_ids) < 0 or max(s.token_ids) >= self.config.vocab_size:
            raise ValueError(f"token ids outside the vocabulary [0, {self.config.vocab_size})")

    def _context(self, batch: list[SeqSlice]) -> tuple[torch.Tensor, AttentionContext]:
        bs = self.block_size
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        cu_seqlens = [0]
        for s in batch:
            self._check(s)
            end = s.start_pos + len(s.token_ids)
            input_ids += s.token_ids
            positions += range(s.start_pos, end)
            slots += [s.block_table[p // bs] * bs + p % bs for p in range(s.start_pos, end)]
            cu_seqlens.append(len(input_ids))
        width = max(len(s.block_table) for s in batch)
        tables = [s.block_table + [-1] * (width - len(s.block_table)) for s in batch]
        context_lens = [s.start_pos + len(s.token_ids) for s in batch]

        def tensor(values: list, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=self.device)

        ctx = AttentionContext(
            cu_seqlens_q=tensor(cu_seqlens, torch.int32),
            context_lens=tensor(context_lens, torch.int32),
            block_tables=tensor(tables, torch.int32),
            slot_mapping=tensor(slots, torch.int64),
            positions=tensor(positions, torch.int64),
            block_size=bs,
            query_lens_host=[len(s.token_ids) for s in batch],
            context_lens_host=context_lens,
        )
        return tensor(input_ids, torch.int64), ctx

    @torch.inference_mode()
    def forward(self, batch: list[SeqSlice]) -> torch.Tensor:
        """float32 logits `[len(batch), vocab]` at each slice's last token."""
        if not batch:
            raise ValueError("empty batch")
        input_ids, ctx = self._context(batch)
        set_context(ctx)
        try:
            hidden = self.model(input_ids, ctx.positions)
            last = ctx.cu_seqlens_q[1:].long() - 1
            return self.model.compute_logits(hidden.index_select(0, last)).float()
        finally:
            reset_context()
