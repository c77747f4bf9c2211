"""Triton FP8 scaled GEMM for CUDA devices where torch._scaled_mm cannot run (no fp8
tensor cores before sm89, fp16 output): `y = (xq @ wq^T) * x_scale[m] * w_scale[n]`.

Operands are read as raw e4m3 bytes and widened to fp16 in registers with a bit shift:
e4m3's exponent and mantissa bits, moved into fp16's fields, are the same number times
2^-8 (normals and subnormals alike, since both formats' subnormals share that offset), so
the widening is exact on every architecture and the 2^-16 of the two operands is undone
in the epilogue. fp16 tensor cores then multiply exactly and accumulate in fp32, the same
sum engine/quantization/fp8.py's reference computes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from infleet.engine.kernels.interpreter import match_gpu_semantics

match_gpu_semantics()  # the interpreter (CPU only) rounds as the GPU does

_UNDO_WIDENING = 65536.0  # 2^8 per operand


@triton.jit
def _e4m3_bytes_to_fp16(b):
    """Raw e4m3 bytes -> fp16 equal to the e4m3 value times 2^-8 (exact)."""
    bits = ((b & 0x7F).to(tl.uint16) << 7) | ((b & 0x80).to(tl.uint16) << 8)
    return bits.to(tl.float16, bitcast=True)


@triton.jit
def _fp8_gemm_kernel(
    x_ptr, w_ptr, xs_ptr, ws_ptr, out_ptr, M, N, K,
    stride_xm, stride_wn, stride_om,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    w_rows = w_ptr + rn[:, None].to(tl.int64) * stride_wn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + rk
        x = tl.load(x_rows + k[None, :], mask=(rm[:, None] < M) & (k[None, :] < K), other=0)
        w = tl.load(w_rows + k[None, :], mask=(rn[:, None] < N) & (k[None, :] < K), other=0)
        acc += tl.dot(_e4m3_bytes_to_fp16(x), tl.trans(_e4m3_bytes_to_fp16(w)))
    xs = tl.load(xs_ptr + rm, mask=rm < M, other=0.0)
    ws = tl.load(ws_ptr + rn, mask=rn < N, other=0.0)
    y = acc * _UNDO_WIDENING * xs[:, None] * ws[None, :]
    out = out_ptr + rm[:, None].to(tl.int64) * stride_om + rn[None, :]
    tl.store(out, y.to(out_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


def fp8_scaled_gemm(
    xq: torch.Tensor,  # e4m3 [M, K]
    x_scale: torch.Tensor,  # float32 [M, 1]
    wq: torch.Tensor,  # e4m3 [N, K]
    w_scale: torch.Tensor,  # float32 [N]
    out_dtype: torch.dtype,
) -> torch.Tensor:
    if xq.stride(-1) != 1 or wq.stride(-1) != 1:
        raise ValueError("fp8_scaled_gemm needs rows with a contiguous K dim")
    (m, k), n = xq.shape, wq.shape[0]
    out = torch.empty(m, n, dtype=out_dtype, device=xq.device)
    block_m = 16 if m <= 16 else 64  # decode batches are a few rows: don't waste a tile
    block_n, block_k = 64, 64
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _fp8_gemm_kernel[grid](
        xq.view(torch.uint8), wq.view(torch.uint8), x_scale.contiguous(), w_scale.contiguous(),
        out, m, n, k, xq.stride(0), wq.stride(0), out.stride(0),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip
    return out
