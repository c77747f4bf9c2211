"""Triton NVFP4 weight-only GEMM (W4A16): `y = (x @ (e2m1 · block_scale)^T) · global_scale[n]`.

Hopper has no FP4 tensor cores, so the weight is widened in registers and the product runs
on the model dtype's tensor cores (as vLLM runs NVFP4 checkpoints on Hopper); what decode
saves is the bytes read: half a byte per weight plus one e4m3 scale per 16.
A byte holds elements 2i (low nibble) and 2i+1 (high nibble), so instead of interleaving
the nibbles the kernel splits x: even columns of x times the low nibbles plus odd columns
times the high ones, two dots over half the K each. `e2m1 · block_scale` is exact in
bf16/fp16; the fp32 sum is multiplied by its row's global scale once (q, k and v packed
into one weight each keep their checkpoint's own), as
engine/quantization/fp4.py's reference does.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from infleet.engine.kernels.interpreter import match_gpu_semantics

match_gpu_semantics()  # the interpreter (CPU only) rounds as the GPU does

_BLOCK = 16  # NVFP4 elements per block scale


@triton.jit
def _e2m1(code):
    """4-bit codes -> float32: magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6; bit 3 is the sign."""
    code = code.to(tl.int32)
    exp = (code >> 1) & 3
    mant = (code & 1).to(tl.float32)
    normal = (1.0 + 0.5 * mant) * ((1 << exp) >> 1).to(tl.float32)
    mag = tl.where(exp == 0, 0.5 * mant, normal)
    return tl.where((code & 8) != 0, -mag, mag)


@triton.jit
def _e4m3(b):
    """Raw e4m3 bytes -> float32 (via fp16, whose fields hold e4m3's shifted by 2^-8)."""
    bits = ((b & 0x7F).to(tl.uint16) << 7) | ((b & 0x80).to(tl.uint16) << 8)
    return bits.to(tl.float16, bitcast=True).to(tl.float32) * 256.0


@triton.jit
def _fp4_gemm_kernel(
    x_ptr, w_ptr, s_ptr, g_ptr, out_ptr, M, N, K,
    stride_xm, stride_wn, stride_sn, stride_om,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SCALE_BLOCK: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    pair = tl.arange(0, BLOCK_K // 2)  # byte j of the tile holds columns 2j and 2j+1
    x_rows = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    w_rows = w_ptr + rn[:, None].to(tl.int64) * stride_wn
    s_rows = s_ptr + rn[:, None].to(tl.int64) * stride_sn
    m_ok, n_ok = rm[:, None] < M, rn[:, None] < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        even = k0 + 2 * pair
        k_ok = even[None, :] < K
        x_even = tl.load(x_rows + even[None, :], mask=m_ok & k_ok, other=0.0)
        x_odd = tl.load(x_rows + even[None, :] + 1, mask=m_ok & k_ok, other=0.0)
        packed = tl.load(w_rows + (even // 2)[None, :], mask=n_ok & k_ok, other=0)
        scale = _e4m3(tl.load(s_rows + (even // SCALE_BLOCK)[None, :], mask=n_ok & k_ok, other=0))
        w_even = (_e2m1(packed & 0xF) * scale).to(x_even.dtype)
        w_odd = (_e2m1(packed >> 4) * scale).to(x_even.dtype)
        if IEEE:
            acc += tl.dot(x_even, tl.trans(w_even), input_precision="ieee")
            acc += tl.dot(x_odd, tl.trans(w_odd), input_precision="ieee")
        else:
            acc += tl.dot(x_even, tl.trans(w_even))
            acc += tl.dot(x_odd, tl.trans(w_odd))
    y = acc * tl.load(g_ptr + rn, mask=rn < N, other=0.0)[None, :]
    out = out_ptr + rm[:, None].to(tl.int64) * stride_om + rn[None, :]
    tl.store(out, y.to(out_ptr.dtype.element_ty), mask=m_ok & (rn[None, :] < N))


def fp4_gemm(
    x: torch.Tensor,  # [M, K], bf16 / fp16 / fp32
    packed: torch.Tensor,  # uint8 [N, K/2]
    block_scale: torch.Tensor,  # e4m3 [N, K/16]
    global_scale: torch.Tensor,  # float32 [N] or [1]
) -> torch.Tensor:
    if x.stride(-1) != 1 or packed.stride(-1) != 1 or block_scale.stride(-1) != 1:
        raise ValueError("fp4_gemm needs rows with a contiguous K dim")
    (m, k), n = x.shape, packed.shape[0]
    if k % 32:  # a tile's two halves must hold whole scale blocks
        raise ValueError(f"fp4_gemm needs K to be a multiple of 32, got {k}")
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    block_m = 16 if m <= 16 else 64
    block_n, block_k = 64, 64 if k % 64 == 0 else 32
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _fp4_gemm_kernel[grid](
        x, packed, block_scale.view(torch.uint8),
        global_scale.float().expand(n).contiguous(), out, m, n, k,
        x.stride(0), packed.stride(0), block_scale.stride(0), out.stride(0),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, SCALE_BLOCK=_BLOCK,
        IEEE=x.dtype == torch.float32,
    )  # fmt: skip
    return out
