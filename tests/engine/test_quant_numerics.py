"""FP8 (W8A8) and NVFP4 (W4A16) numerics: rounding, packing, and each GEMM path (the Triton
kernels, in the interpreter on CPU, and the CPU reference) against float64 computed from
the same quantized tensors.

Tolerances: a path's fp32 output differs from float64 only by fp32 summation order
(relative 1e-5 at these K); a bf16/fp16 output adds one final rounding (2^-8, 2^-11).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infleet.engine.kernels.fp4_gemm import fp4_gemm
from infleet.engine.kernels.fp8 import FP8_MAX
from infleet.engine.kernels.fp8_gemm import fp8_scaled_gemm
from infleet.engine.quantization.fp4 import (
    E2M1_VALUES,
    dequantize_nvfp4,
    e2m1_codes,
    e2m1_values,
    fp4_gemm_reference,
    fp4_linear,
    pack_codes,
    quantize_nvfp4,
    unpack_codes,
)
from infleet.engine.quantization.fp8 import fp8_gemm_reference, fp8_linear, quantize_rows
from tests.engine.kernel_cases import DEVICE, relative_error

OUT_BOUND = {torch.float32: 1e-5, torch.bfloat16: 2**-8, torch.float16: 2**-10}


def _randn(*shape, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(dtype).to(DEVICE)


def _nearest_e2m1_brute_force(x: float) -> int:
    """Smallest distance to a magnitude; a tie goes to the even code; beyond 6 saturates."""
    a = min(abs(x), 6.0)
    dists = [abs(a - v) for v in E2M1_VALUES]
    best = min(dists)
    code = min((c for c, d in enumerate(dists) if d == best), key=lambda c: (c % 2, c))
    return code | (8 if x < 0 else 0)


def test_e2m1_rounds_to_nearest_with_ties_to_even_and_saturates():
    grid = [i / 8 for i in range(-64, 65)] + [5.0, -5.0, 7.0, 100.0, -1e9, 0.2499, 0.2501]
    codes = e2m1_codes(torch.tensor(grid)).tolist()
    assert codes == [_nearest_e2m1_brute_force(x) for x in grid]
    assert e2m1_values(torch.arange(16, dtype=torch.uint8)).tolist() == [
        *E2M1_VALUES,
        *(-v for v in E2M1_VALUES),
    ]


def test_packing_puts_the_even_element_in_the_low_nibble():
    codes = torch.tensor([[1, 2, 15, 0, 7, 8]], dtype=torch.uint8)
    packed = pack_codes(codes)
    assert packed.tolist() == [[0x21, 0x0F, 0x87]]
    assert torch.equal(unpack_codes(packed), codes)


def test_nvfp4_quantization_layout_and_error():
    w = _randn(48, 64, seed=1).cpu() * 0.05
    w[3, :16] = 0  # an all-zero block keeps scale 0 and values 0
    packed, block_scale, global_scale = quantize_nvfp4(w)
    assert packed.dtype == torch.uint8 and packed.shape == (48, 32)
    assert block_scale.dtype == torch.float8_e4m3fn and block_scale.shape == (48, 4)
    assert global_scale.shape == (1,)
    assert block_scale.float().max().item() == FP8_MAX  # the largest block scale saturates e4m3
    deq = dequantize_nvfp4(packed, block_scale, global_scale)
    assert torch.equal(deq[3, :16], torch.zeros(16))
    # Each value is off by at most half an e2m1 step of its block (step 2 at the top).
    block_max = w.abs().view(48, 4, 16).amax(-1).repeat_interleave(16, dim=1)
    assert ((deq - w).abs() <= block_max / 6 * 1.0 * 1.07 + 1e-9).all()
    assert relative_error(deq, w) < 0.12
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_nvfp4(torch.ones(4, 40))


def test_fp8_rows_scale_each_row_to_448():
    x = _randn(5, 96, seed=2).cpu() * torch.tensor([[1e-3], [1.0], [30.0], [0.0], [1e4]])
    xq, scale = quantize_rows(x)
    assert xq.dtype == torch.float8_e4m3fn and scale.shape == (5, 1)
    amax = xq.float().abs().amax(-1)
    assert amax[[0, 1, 2, 4]].tolist() == [FP8_MAX] * 4 and amax[3].item() == 0
    deq = xq.float() * scale
    assert torch.isfinite(deq).all()
    nonzero = x.abs() > x.abs().amax(-1, keepdim=True) * 2**-6  # e4m3 normals: 2^-4 relative
    assert ((deq - x).abs() <= x.abs() * 2**-4 + 1e-30)[nonzero].all()


def _fp8_operands(m: int, n: int, k: int):
    xq, x_scale = quantize_rows(_randn(m, k, seed=3).cpu())
    wq, w_scale = quantize_rows(_randn(n, k, seed=4).cpu() * 0.02)
    exact = (xq.double() @ wq.double().t()) * x_scale.double() * w_scale.double().view(1, -1)
    dev = [t.to(DEVICE) for t in (xq, x_scale, wq, w_scale.view(-1))]
    return dev, exact


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m", [1, 21])
def test_fp8_gemm_kernel_and_reference_match_float64(dtype, m):
    (xq, x_scale, wq, w_scale), exact = _fp8_operands(m, 80, 96)  # partial tiles in N and K
    assert (
        relative_error(fp8_scaled_gemm(xq, x_scale, wq, w_scale, dtype), exact) < (OUT_BOUND[dtype])
    )
    ref = fp8_gemm_reference(xq.cpu(), x_scale.cpu(), wq.cpu(), w_scale.cpu(), dtype)
    assert relative_error(ref, exact) < OUT_BOUND[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("m", "k"), [(1, 128), (19, 96)])
def test_fp4_gemm_kernel_and_reference_match_float64(dtype, m, k):
    # Two tensors packed into one weight (as q/k/v are), each with its own global scale.
    parts = [
        quantize_nvfp4(_randn(rows, k, seed=5 + rows).cpu() * s)
        for rows, s in ((40, 0.02), (32, 3.0))
    ]
    packed, block_scale = (torch.cat([p[i] for p in parts]) for i in (0, 1))
    global_scale = torch.cat([p[2].expand(len(p[0])) for p in parts])
    x = _randn(m, k, seed=6, dtype=dtype).cpu()
    exact = x.double() @ dequantize_nvfp4(packed, block_scale, global_scale).double().t()
    dev = [t.to(DEVICE) for t in (x, packed, block_scale, global_scale)]
    assert relative_error(fp4_gemm(*dev), exact) < OUT_BOUND[dtype]
    ref = fp4_gemm_reference(x, packed, block_scale, global_scale)
    assert ref.dtype == dtype and relative_error(ref, exact) < OUT_BOUND[dtype]


def test_quantized_linears_approximate_the_float_layer():
    """End to end on the CPU path: the error is quantization's, of the size e4m3 (3
    mantissa bits, both operands) and blocked e2m1 (1 mantissa bit) give on Gaussians."""
    x, w, bias = _randn(3, 7, 256, seed=7).cpu(), _randn(96, 256, seed=8).cpu(), torch.ones(96)
    exact = F.linear(x, w, bias)
    wq, w_scale = quantize_rows(w)
    fp8 = fp8_linear(x, wq, w_scale.view(-1), bias)
    assert fp8.shape == (3, 7, 96) and relative_error(fp8, exact) < 0.05
    fp4 = fp4_linear(x, *quantize_nvfp4(w), bias)
    assert fp4.shape == (3, 7, 96) and 0.01 < relative_error(fp4, exact) < 0.15
