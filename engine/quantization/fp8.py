"""FP8 W8A8 numerics: e4m3 weights with one scale per output channel, activations
quantized per token at run time, one scaled GEMM.

`y[m, n] = (Σ_k xq[m, k] · wq[n, k]) · sx[m] · sw[n]`, where each row of x and of W is
divided by its own scale (its absolute maximum / 448) and rounded to e4m3. The products
of two e4m3 numbers are exact in fp32, so every path below (torch._scaled_mm on Hopper,
the Triton kernel elsewhere on CUDA, the fp32 torch reference on CPU) computes the same
sum up to the order of its fp32 additions; the rounding that matters (x and W to e4m3)
is done by the one function `quantize_rows`, on every device.
"""

from __future__ import annotations

import torch

from infleet.engine.kernels.fp8 import FP8_DTYPE, FP8_MAX

# A row of zeros gets this amax, so its scale is tiny but never 0 (no 0/0 -> NaN).
_MIN_AMAX = 1e-12


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of `x [M, K]` -> (e4m3 `[M, K]`, float32 scales `[M, 1]`): each row's absolute
    maximum lands on 448, so no row overflows and each keeps e4m3's 3 mantissa bits."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(_MIN_AMAX)
    scale = amax / FP8_MAX
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def fp8_gemm_reference(
    xq: torch.Tensor,  # e4m3 [M, K]
    x_scale: torch.Tensor,  # float32 [M, 1]
    wq: torch.Tensor,  # e4m3 [N, K]
    w_scale: torch.Tensor,  # float32 [N]
    out_dtype: torch.dtype,
) -> torch.Tensor:
    """The scaled GEMM in fp32 torch: the CPU path, and the definition the kernels meet."""
    acc = xq.float() @ wq.float().t()
    return (acc * x_scale * w_scale.view(1, -1)).to(out_dtype)


def _scaled_mm_fits(x: torch.Tensor, wq: torch.Tensor) -> bool:
    """torch._scaled_mm with row-wise scales: fp8 tensor cores (sm89+), bf16 output, and
    K, N multiples of 16 (cuBLASLt's fp8 alignment)."""
    return (
        torch.cuda.get_device_capability(x.device) >= (8, 9)
        and x.dtype == torch.bfloat16
        and wq.shape[0] % 16 == 0
        and wq.shape[1] % 16 == 0
    )


def fp8_linear(
    x: torch.Tensor,
    wq: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """`x [..., K]` (model dtype) times e4m3 `wq [N, K]` with scales `w_scale [N]`."""
    rows = x.reshape(-1, x.shape[-1])
    xq, x_scale = quantize_rows(rows)
    if not x.is_cuda:
        y = fp8_gemm_reference(xq, x_scale, wq, w_scale, x.dtype)
    elif _scaled_mm_fits(x, wq):
        y = torch._scaled_mm(
            xq, wq.t(), scale_a=x_scale, scale_b=w_scale.view(1, -1), out_dtype=x.dtype
        )
    else:
        from infleet.engine.kernels.fp8_gemm import fp8_scaled_gemm

        y = fp8_scaled_gemm(xq, x_scale, wq, w_scale, x.dtype)
    if bias is not None:
        y = y + bias
    return y.view(*x.shape[:-1], wq.shape[0])
