"""The flash-attn attention backend, for machines where the `flash_attn` package imports.

flash-attn cannot be built on this project's machines, so this stays thin and is only
chosen where it works: K/V go into the cache through our Triton write kernel; decodes
use `flash_attn_with_kvcache` over the block tables (its own split-KV heuristics) and
mixed batches `flash_attn_varlen_func` with `block_table` (FA2 >= 2.6), both causal
aligned to the end of each sequence's keys, which is the contract's causality.
Upstream flash-attn pages must be a multiple of 256 tokens and it reads no fp8 cache;
`unsupported_reason` says so before the backend is chosen.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from infleet.engine.attention.context import get_context
from infleet.engine.kernels.fp8 import FP8_DTYPE
from infleet.engine.kernels.kv_write import write_kv

FLASH_ATTN_PAGE_MULTIPLE = 256


def unsupported_reason(block_size: int, kv_dtype: torch.dtype | None) -> str | None:
    """Why flash-attn cannot serve this configuration, or None if it can."""
    if importlib.util.find_spec("flash_attn") is None:
        return "the flash_attn package is not installed"
    if block_size % FLASH_ATTN_PAGE_MULTIPLE:
        return (
            f"flash-attn's paged kernels need --block-size a multiple of "
            f"{FLASH_ATTN_PAGE_MULTIPLE}, got {block_size}"
        )
    if kv_dtype == FP8_DTYPE:
        return "flash-attn does not read an fp8 KV cache; use --attention-backend triton"
    return None


def window_size(sliding_window: int | None) -> tuple[int, int]:
    """Our window (a query at p sees keys p - W < j <= p) in flash-attn's (left, right)."""
    return (-1, -1) if sliding_window is None else (sliding_window - 1, 0)


class FlashAttnBackend:
    name = "flash-attn"

    def __init__(self) -> None:
        import flash_attn  # only where it is installed; ImportError says so otherwise

        self._varlen = flash_attn.flash_attn_varlen_func
        self._with_kvcache = flash_attn.flash_attn_with_kvcache

    def forward(
        self,
        q: torch.Tensor,  # [T, H, D]
        k: torch.Tensor,  # [T, Hkv, D]
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        *,
        scale: float,
        sliding_window: int | None,
        k_scale: torch.Tensor | None = None,
        v_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if k_cache.dtype == FP8_DTYPE:
            raise ValueError(unsupported_reason(FLASH_ATTN_PAGE_MULTIPLE, FP8_DTYPE))
        ctx = get_context()
        write_kv(k, v, k_cache, v_cache, ctx.slot_mapping)
        window = window_size(sliding_window)
        if q.shape[0] == ctx.num_seqs:  # decode only: one query per sequence
            out = self._with_kvcache(
                q.unsqueeze(1), k_cache, v_cache, cache_seqlens=ctx.context_lens,
                block_table=ctx.block_tables, softmax_scale=scale, causal=True,
                window_size=window,
            )  # fmt: skip
            return out.squeeze(1)
        cu_seqlens_k = F.pad(ctx.context_lens.cumsum(0, dtype=torch.int32), (1, 0))
        return self._varlen(
            q, k_cache, v_cache, cu_seqlens_q=ctx.cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
            max_seqlen_q=max(ctx.query_lens_host), max_seqlen_k=max(ctx.context_lens_host),
            softmax_scale=scale, causal=True, window_size=window, block_table=ctx.block_tables,
        )  # fmt: skip
