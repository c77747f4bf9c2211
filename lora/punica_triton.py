"""Batched multi-LoRA as two Triton kernels (CUDA), over the LoRABatch's blocks (each
adapter's tokens cut into tiles of 16, batch.py).

shrink: one program per (block, rank tile) computes `h = x[rows] @ A[slot]^T`, looping
over in_features; expand: one program per (block, packed part, output tile) adds
`h_part @ B[slot]_part^T` into y's rows of that block. Each token lies in one block and
each output column in one tile, so the expand writes without atomics. Unused blocks
(`block_lens == 0`, the padding of a fixed-shape batch) return at once, so a CUDA graph
can be captured at a fixed block count. Rounding follows the torch path: h and the delta
are rounded to the model dtype before the add.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from infleet.lora.batch import LoRABatch


@triton.jit
def _shrink_kernel(
    x_ptr, a_ptr, h_ptr, tokens_ptr, slots_ptr, lens_ptr,
    in_features, width, stride_x, stride_as, stride_ar, stride_hb, stride_hm,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    block = tl.program_id(0)
    length = tl.load(lens_ptr + block)
    if length == 0:
        return
    slot = tl.load(slots_ptr + block).to(tl.int64)
    m = tl.arange(0, BLOCK_M)
    real = m < length
    rows = tl.load(tokens_ptr + block * BLOCK_M + m, mask=real, other=0).to(tl.int64)
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, in_features, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        xs = tl.load(
            x_ptr + rows[:, None] * stride_x + k[None, :],
            mask=real[:, None] & (k[None, :] < in_features), other=0.0,
        )  # fmt: skip
        a = tl.load(
            a_ptr + slot * stride_as + n[None, :] * stride_ar + k[:, None],
            mask=(n[None, :] < width) & (k[:, None] < in_features), other=0.0,
        )  # fmt: skip
        acc = tl.dot(xs, a, acc, input_precision=DOT_PRECISION)
    h = h_ptr + block * stride_hb + m[:, None] * stride_hm + n[None, :]
    tl.store(h, acc.to(h_ptr.dtype.element_ty), mask=real[:, None] & (n[None, :] < width))


@triton.jit
def _expand_kernel(
    h_ptr, b_ptr, y_ptr, tokens_ptr, slots_ptr, lens_ptr, offsets_ptr, sizes_ptr,
    rank, stride_hb, stride_hm, stride_bs, stride_bo, stride_y,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    block, part, tile = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    length = tl.load(lens_ptr + block)
    size = tl.load(sizes_ptr + part)
    if length == 0 or tile * BLOCK_N >= size:
        return
    slot = tl.load(slots_ptr + block).to(tl.int64)
    m = tl.arange(0, BLOCK_M)
    real = m < length
    rows = tl.load(tokens_ptr + block * BLOCK_M + m, mask=real, other=0).to(tl.int64)
    cols = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    out_cols = tl.load(offsets_ptr + part) + cols
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for r0 in range(0, rank, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        h = tl.load(
            h_ptr + block * stride_hb + m[:, None] * stride_hm + part * rank + r[None, :],
            mask=real[:, None] & (r[None, :] < rank), other=0.0,
        )  # fmt: skip
        b = tl.load(
            b_ptr + slot * stride_bs + out_cols[None, :] * stride_bo + r[:, None],
            mask=(r[:, None] < rank) & (cols[None, :] < size), other=0.0,
        )  # fmt: skip
        acc = tl.dot(h, b, acc, input_precision=DOT_PRECISION)
    keep = real[:, None] & (cols[None, :] < size)
    y = y_ptr + rows[:, None] * stride_y + out_cols[None, :]
    dtype = y_ptr.dtype.element_ty
    total = tl.load(y, mask=keep, other=0.0).to(tl.float32) + acc.to(dtype).to(tl.float32)
    tl.store(y, total.to(dtype), mask=keep)


def add_lora_triton(
    y: torch.Tensor,
    x: torch.Tensor,
    batch: LoRABatch,
    a: torch.Tensor,
    b: torch.Tensor,
    part_sizes: Sequence[int],
    part_meta: torch.Tensor | None = None,
) -> None:
    """Same contract as punica_torch.add_lora_torch. `part_meta` ([2, parts] int32 on the
    device: offsets, sizes) can be cached by the caller to save a copy per call."""
    if x.stride(1) != 1 or y.stride(1) != 1 or not a.is_contiguous() or not b.is_contiguous():
        raise ValueError("add_lora_triton needs row-major x, y and contiguous A, B")
    num_blocks, block_size = batch.block_tokens.shape
    width, in_features = a.shape[1], a.shape[2]
    rank = b.shape[2]
    if part_meta is None:
        offsets = [sum(part_sizes[:i]) for i in range(len(part_sizes))]
        part_meta = torch.tensor([offsets, list(part_sizes)], dtype=torch.int32, device=y.device)
    h = torch.empty(num_blocks, block_size, width, dtype=x.dtype, device=x.device)
    # fp32 models multiply in full fp32 (as the torch path does), not TF32.
    precision = "ieee" if x.dtype == torch.float32 else "tf32"
    block_n = max(16, min(64, triton.next_power_of_2(width)))
    _shrink_kernel[(num_blocks, triton.cdiv(width, block_n))](
        x, a, h, batch.block_tokens, batch.block_slots, batch.block_lens,
        in_features, width, x.stride(0), a.stride(0), a.stride(1), h.stride(0), h.stride(1),
        BLOCK_M=block_size, BLOCK_N=block_n, BLOCK_K=64, DOT_PRECISION=precision,
    )  # fmt: skip
    block_out = 64
    _expand_kernel[(num_blocks, len(part_sizes), triton.cdiv(max(part_sizes), block_out))](
        h, b, y, batch.block_tokens, batch.block_slots, batch.block_lens,
        part_meta[0], part_meta[1], rank, h.stride(0), h.stride(1), b.stride(0), b.stride(1),
        y.stride(0), BLOCK_M=block_size, BLOCK_N=block_out,
        BLOCK_R=max(16, min(64, triton.next_power_of_2(rank))), DOT_PRECISION=precision,
    )  # fmt: skip
