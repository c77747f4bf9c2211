"""Triton rotary embedding (rotate-half layout), applied in place to q and k together.

One program per token reads its position's cos/sin row once and rotates every query and
key head of that token: one launch for both tensors instead of the gather, two slices,
four products and a concat per tensor of the torch layer. cos/sin are
engine/layers/rotary.py's buffers (`[max_positions, head_dim / 2]`, model dtype), and
each product and sum is rounded to the model dtype as that layer rounds them.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from infleet.engine.kernels.interpreter import match_gpu_semantics

match_gpu_semantics()  # the interpreter (CPU only) rounds as the GPU does


@triton.jit
def _rotate_heads(x_ptr, stride_t, stride_h, token, c, s,
                  NUM_HEADS: tl.constexpr, HALF: tl.constexpr,
                  BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr):  # fmt: skip
    heads = tl.arange(0, BLOCK_H)
    dims = tl.arange(0, BLOCK_HALF)
    mask = (heads[:, None] < NUM_HEADS) & (dims[None, :] < HALF)
    ptrs = x_ptr + token * stride_t + heads[:, None] * stride_h + dims[None, :]
    first = tl.load(ptrs, mask=mask, other=0.0)
    second = tl.load(ptrs + HALF, mask=mask, other=0.0)
    dtype = first.dtype
    first = first.to(tl.float32)
    second = second.to(tl.float32)
    out_first = (first * c).to(dtype).to(tl.float32) - (second * s).to(dtype).to(tl.float32)
    out_second = (second * c).to(dtype).to(tl.float32) + (first * s).to(dtype).to(tl.float32)
    tl.store(ptrs, out_first.to(dtype), mask=mask)
    tl.store(ptrs + HALF, out_second.to(dtype), mask=mask)


@triton.jit
def _rope_kernel(
    q_ptr, k_ptr, positions_ptr, cos_ptr, sin_ptr,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_cos, stride_sin,
    NUM_Q_HEADS: tl.constexpr, NUM_K_HEADS: tl.constexpr, HALF: tl.constexpr,
    BLOCK_QH: tl.constexpr, BLOCK_KH: tl.constexpr, BLOCK_HALF: tl.constexpr,
):  # fmt: skip
    token = tl.program_id(0).to(tl.int64)
    pos = tl.load(positions_ptr + token).to(tl.int64)
    dims = tl.arange(0, BLOCK_HALF)
    # cos/sin are rounded to the q/k dtype first: the torch layer stores them that way.
    dtype = q_ptr.dtype.element_ty
    c = tl.load(cos_ptr + pos * stride_cos + dims, mask=dims < HALF, other=0.0)
    s = tl.load(sin_ptr + pos * stride_sin + dims, mask=dims < HALF, other=0.0)
    c = c.to(dtype).to(tl.float32)[None, :]
    s = s.to(dtype).to(tl.float32)[None, :]
    _rotate_heads(q_ptr, stride_qt, stride_qh, token, c, s, NUM_Q_HEADS, HALF, BLOCK_QH, BLOCK_HALF)
    _rotate_heads(k_ptr, stride_kt, stride_kh, token, c, s, NUM_K_HEADS, HALF, BLOCK_KH, BLOCK_HALF)


def apply_rope(
    positions: torch.Tensor,  # int64 [T]
    q: torch.Tensor,  # [T, Hq, D], may be a strided view into the fused qkv output
    k: torch.Tensor,  # [T, Hkv, D]
    cos: torch.Tensor,  # [max_positions, D/2]
    sin: torch.Tensor,
) -> None:
    """Rotate q and k in place by each token's position."""
    num_tokens, num_q_heads, head_dim = q.shape
    if head_dim % 2 or k.shape[2] != head_dim or cos.shape[-1] * 2 != head_dim:
        raise ValueError(f"rope: head_dim {head_dim}, k {tuple(k.shape)}, cos {tuple(cos.shape)}")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or cos.stride(-1) != 1 or sin.stride(-1) != 1:
        raise ValueError("rope needs a contiguous head_dim")
    if num_tokens == 0:
        return
    half = head_dim // 2
    _rope_kernel[(num_tokens,)](
        q, k, positions, cos, sin, q.stride(0), q.stride(1), k.stride(0), k.stride(1),
        cos.stride(0), sin.stride(0), NUM_Q_HEADS=num_q_heads, NUM_K_HEADS=k.shape[1],
        HALF=half, BLOCK_QH=triton.next_power_of_2(num_q_heads),
        BLOCK_KH=triton.next_power_of_2(k.shape[1]), BLOCK_HALF=triton.next_power_of_2(half),
        num_warps=4,
    )  # fmt: skip
