"""Triton KV write: scatter this step's keys and values into their paged cache slots.

One program per token writes all its KV heads (one contiguous `[Hkv, D]` row per
tensor). A negative slot means "no cache slot" (the padding rows of a CUDA-graph batch)
and is skipped. FP8 caches store `x / scale` saturated to ±448, rounded to nearest even.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from infleet.engine.kernels.fp8 import FP8_DTYPE, FP8_MAX
from infleet.engine.kernels.interpreter import match_gpu_semantics

match_gpu_semantics()  # the interpreter (CPU only) rounds as the GPU does


@triton.jit
def _write_kv_kernel(
    key_ptr, value_ptr, k_cache_ptr, v_cache_ptr, slot_ptr, k_scale_ptr, v_scale_ptr,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_kcb, stride_kcs, stride_kch, stride_vcb, stride_vcs, stride_vch,
    k_scale_stride, v_scale_stride,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr, PAGE: tl.constexpr, IS_FP8: tl.constexpr, FP8_LIMIT: tl.constexpr,
):  # fmt: skip
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + token)
    if slot < 0:
        return
    block = slot // PAGE
    offset = slot % PAGE
    heads = tl.arange(0, BLOCK_H)
    dims = tl.arange(0, BLOCK_D)
    mask = (heads[:, None] < NUM_HEADS) & (dims[None, :] < HEAD_DIM)
    k = tl.load(key_ptr + token * stride_kt + heads[:, None] * stride_kh + dims[None, :], mask=mask)
    v = tl.load(
        value_ptr + token * stride_vt + heads[:, None] * stride_vh + dims[None, :], mask=mask
    )
    if IS_FP8:
        k_scale = tl.load(k_scale_ptr + heads * k_scale_stride, mask=heads < NUM_HEADS, other=1.0)
        v_scale = tl.load(v_scale_ptr + heads * v_scale_stride, mask=heads < NUM_HEADS, other=1.0)
        k = tl.clamp(tl.div_rn(k.to(tl.float32), k_scale[:, None]), -FP8_LIMIT, FP8_LIMIT)
        v = tl.clamp(tl.div_rn(v.to(tl.float32), v_scale[:, None]), -FP8_LIMIT, FP8_LIMIT)
    k_dst = k_cache_ptr + block * stride_kcb + offset * stride_kcs + heads[:, None] * stride_kch
    v_dst = v_cache_ptr + block * stride_vcb + offset * stride_vcs + heads[:, None] * stride_vch
    tl.store(k_dst + dims[None, :], k.to(k_cache_ptr.dtype.element_ty), mask=mask)
    tl.store(v_dst + dims[None, :], v.to(v_cache_ptr.dtype.element_ty), mask=mask)


def write_kv(
    key: torch.Tensor,  # [T, Hkv, D]
    value: torch.Tensor,
    k_cache: torch.Tensor,  # [num_blocks, block_size, Hkv, D]
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,  # int64 [T]
    k_scale: torch.Tensor | None = None,  # float32 [1] or [Hkv], fp8 caches only
    v_scale: torch.Tensor | None = None,
) -> None:
    num_tokens, num_heads, head_dim = key.shape
    if key.stride(-1) != 1 or value.stride(-1) != 1:
        raise ValueError("keys and values need a contiguous head_dim")
    is_fp8 = k_cache.dtype == FP8_DTYPE
    if is_fp8 and (k_scale is None or v_scale is None):
        raise ValueError("an fp8 KV cache needs k_scale and v_scale")
    if num_tokens == 0:
        return
    scales = (k_scale, v_scale) if is_fp8 else (key, key)  # pointers unused unless fp8
    _write_kv_kernel[(num_tokens,)](
        key, value, k_cache, v_cache, slot_mapping, scales[0], scales[1],
        key.stride(0), key.stride(1), value.stride(0), value.stride(1),
        *k_cache.stride()[:3], *v_cache.stride()[:3],
        *[int(is_fp8 and s.numel() > 1) for s in (k_scale, v_scale)],
        NUM_HEADS=num_heads, HEAD_DIM=head_dim, BLOCK_H=triton.next_power_of_2(num_heads),
        BLOCK_D=triton.next_power_of_2(head_dim), PAGE=k_cache.shape[1], IS_FP8=is_fp8,
        FP8_LIMIT=FP8_MAX, num_warps=4,
    )  # fmt: skip
