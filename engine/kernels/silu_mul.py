"""Triton SiLU-and-multiply for the gated MLP: `[T, 2I] -> silu(gate) * up`.

The fused gate/up projection's output is read once and the product written once (torch
runs silu and the multiply as two kernels with an intermediate). Rounding follows
`act(gate) * up` in the model dtype: silu is rounded before the multiply.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from infleet.engine.kernels.interpreter import match_gpu_semantics

match_gpu_semantics()  # the interpreter (CPU only) rounds as the GPU does


@triton.jit
def _silu_mul_kernel(x_ptr, out_ptr, stride_x, stride_o, INTER: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < INTER
    gate = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    up = tl.load(x_ptr + row * stride_x + INTER + cols, mask=mask, other=0.0)
    g = gate.to(tl.float32)
    activated = (g / (1.0 + tl.exp(-g))).to(gate.dtype).to(tl.float32)
    out = activated * up.to(tl.float32)
    tl.store(out_ptr + row * stride_o + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def silu_mul(x: torch.Tensor) -> torch.Tensor:
    """`x [T, 2I]` (gate then up) -> `[T, I]`."""
    num_rows, width = x.shape
    if width % 2 or x.stride(-1) != 1:
        raise ValueError(f"silu_mul needs [T, 2I] rows with a contiguous last dim, got {x.shape}")
    inter = width // 2
    out = x.new_empty(num_rows, inter)
    block = min(1024, triton.next_power_of_2(inter))
    if num_rows:
        _silu_mul_kernel[(num_rows, triton.cdiv(inter, block))](
            x, out, x.stride(0), out.stride(0), INTER=inter, BLOCK=block, num_warps=4
        )
    return out
