"""Paged KV cache helpers shared by the torch attention backends.

A layer's cache is `[num_blocks, block_size, num_kv_heads, head_dim]`; flattening the
first two dims turns a slot (`block_id * block_size + offset`) into a row index.
"""

from __future__ import annotations

import torch

from infleet.engine.kernels.fp8 import FP8_DTYPE, dequantize_fp8, quantize_fp8


def store_kv(
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
) -> None:
    """Write this step's keys/values `[T, Hkv, D]` into their cache slots; an fp8 cache
    stores `x / scale` as e4m3."""
    for new, cache, scale in ((k, k_cache, k_scale), (v, v_cache, v_scale)):
        rows = cache.view(-1, *cache.shape[2:])
        if cache.dtype == FP8_DTYPE:  # index_copy_ has no fp8 kernel on CPU: copy the bytes
            quantized = quantize_fp8(new, scale).view(torch.uint8)
            rows.view(torch.uint8).index_copy_(0, slot_mapping, quantized)
        else:
            rows.index_copy_(0, slot_mapping, new.to(cache.dtype))


def dequantized(rows: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """Cached rows `[..., Hkv, D]` as read by attention: fp8 ones times their scale."""
    return dequantize_fp8(rows, scale, dtype) if rows.dtype == FP8_DTYPE else rows


def gather_kv(cache: torch.Tensor, block_table: torch.Tensor, context_len: int) -> torch.Tensor:
    """One sequence's first `context_len` cached rows, `[context_len, Hkv, D]`, in order."""
    block_size = cache.shape[1]
    num_blocks = -(-context_len // block_size)
    # index_select copies whole blocks; about twice as fast on CPU as advanced indexing.
    return cache.index_select(0, block_table[:num_blocks]).flatten(0, 1)[:context_len]


def visible_keys(
    query_positions: torch.Tensor, num_keys: int, sliding_window: int | None
) -> torch.Tensor:
    """Bool `[q, num_keys]`: key j is visible to a query at position p iff j <= p and,
    with a sliding window W, p - j < W (the transformers convention)."""
    keys = torch.arange(num_keys, device=query_positions.device)
    diff = query_positions[:, None] - keys[None, :]
    visible = diff >= 0
    if sliding_window is not None:
        visible &= diff < sliding_window
    return visible
