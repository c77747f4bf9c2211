"""Triton RMSNorm, optionally fused with the residual add that precedes it.

One program per token row reads x (and the residual) once and writes the normalized row
(and the new residual) once: one pass instead of the four or five elementwise kernels of
the torch layer. Rounding follows engine/layers/norm.py: the residual sum and the
normalized value are rounded to the model dtype before the weight multiplies.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from infleet.engine.kernels.interpreter import match_gpu_semantics

match_gpu_semantics()  # the interpreter (CPU only) rounds as the GPU does


@triton.jit
def _rms_norm_kernel(
    x_ptr, residual_ptr, weight_ptr, out_ptr, residual_out_ptr,
    stride_x, stride_r, stride_o, stride_ro, eps,
    HIDDEN: tl.constexpr, BLOCK: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < HIDDEN
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    dtype = x.dtype
    if HAS_RESIDUAL:
        r = tl.load(residual_ptr + row * stride_r + cols, mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(dtype)
        tl.store(residual_out_ptr + row * stride_ro + cols, x, mask=mask)
    h = x.to(tl.float32)
    inv_rms = 1.0 / tl.sqrt_rn(tl.sum(h * h, 0) / HIDDEN + eps)
    normed = (h * inv_rms).to(dtype).to(tl.float32)
    w = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + cols, (w * normed).to(out_ptr.dtype.element_ty), mask=mask)


def rms_norm(
    x: torch.Tensor,  # [T, H]
    weight: torch.Tensor,  # [H]
    eps: float,
    residual: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """`rms_norm(x) * weight`; with `residual`, normalizes `x + residual` and returns
    `(normed, x + residual)`, the sum written in place into `residual`."""
    if x.stride(-1) != 1 or (residual is not None and residual.stride(-1) != 1):
        raise ValueError("rms_norm needs rows with a contiguous hidden dim")
    num_rows, hidden = x.shape
    out = torch.empty_like(x)
    has_residual = residual is not None
    res = residual if has_residual else x  # pointer unused without a residual
    if num_rows:
        _rms_norm_kernel[(num_rows,)](
            x, res, weight, out, res, x.stride(0), res.stride(0), out.stride(0), res.stride(0),
            eps, HIDDEN=hidden, BLOCK=triton.next_power_of_2(hidden), HAS_RESIDUAL=has_residual,
            num_warps=8 if hidden >= 4096 else 4,
        )  # fmt: skip
    return (out, residual) if has_residual else out
