"""NVFP4 weight numerics (weight-only, W4A16): e2m1 values in blocks of 16 along K, each
block with an e4m3 scale, and one float32 global scale per tensor.

    W[n, k] ≈ e2m1[n, k] · block_scale[n, k // 16] · global_scale[n]

e2m1 is {0, 0.5, 1, 1.5, 2, 3, 4, 6} with a sign. The global scale puts the tensor's
largest block scale at 448 (e4m3's top), so block scales use e4m3's full range. A checkpoint has one global scale
per tensor; where q, k and v (or gate and up) are packed into one weight, each row keeps
its own tensor's, so `global_scale` is `[N]` (or `[1]`, broadcast).
Two codes pack into a byte, element 2i in the low nibble and 2i+1 in the high one; the
sign is bit 3 of a code (the NVFP4 layout compressed-tensors and ModelOpt checkpoints use).

The GEMM multiplies activations in the model dtype by `e2m1 · block_scale`, which is exact
in bf16/fp16 (2 significant bits times 4 is at most 6), accumulates in fp32 and applies the
global scale to the sum: the Triton kernel on CUDA (engine/kernels/fp4_gemm.py) and
`fp4_gemm_reference` on CPU round at the same places.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infleet.engine.kernels.fp8 import FP8_DTYPE, FP8_MAX

BLOCK = 16
FP4_MAX = 6.0
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # magnitude by 3-bit code
_MIDPOINTS = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
_MIN_AMAX = 1e-12


def e2m1_codes(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest e2m1 value, ties to the even code, saturating at ±6 (as the
    GPU's cvt.rn.satfinite.e2m1x2 does) -> uint8 codes 0..15."""
    a = x.abs().float()
    midpoints = _MIDPOINTS.to(a.device)
    below = torch.bucketize(a, midpoints, right=False)  # a tie goes to the smaller code
    above = torch.bucketize(a, midpoints, right=True)  # a tie goes to the larger code
    mag = torch.where(below % 2 == 0, below, above)  # equal unless a tie: pick the even one
    return (mag | (x < 0).to(mag.dtype) << 3).to(torch.uint8)


def e2m1_values(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes -> float32 values."""
    table = torch.tensor(E2M1_VALUES, device=codes.device)
    mag = table[(codes & 7).long()]
    return torch.where(codes & 8 != 0, -mag, mag)


def pack_codes(codes: torch.Tensor) -> torch.Tensor:
    """`[..., K]` codes -> `[..., K/2]` bytes, the even element in the low nibble."""
    pairs = codes.view(*codes.shape[:-1], -1, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack_codes(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack((packed & 0x0F, packed >> 4), dim=-1).flatten(-2)


def quantize_nvfp4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`w [N, K]` (K a multiple of 16) -> (packed uint8 `[N, K/2]`, e4m3 block scales
    `[N, K/16]`, float32 global scale `[1]`)."""
    n, k = w.shape
    if k % BLOCK:
        raise ValueError(f"NVFP4 needs the input dim to be a multiple of {BLOCK}, got {k}")
    blocks = w.float().view(n, k // BLOCK, BLOCK)
    global_scale = (blocks.abs().amax().clamp_min(_MIN_AMAX) / (FP8_MAX * FP4_MAX)).view(1)
    block_amax = blocks.abs().amax(dim=-1)
    block_scale = (block_amax / FP4_MAX / global_scale).clamp(max=FP8_MAX).to(FP8_DTYPE)
    scale = (block_scale.float() * global_scale).unsqueeze(-1)
    # A block whose scale underflowed e4m3 (all its values < 2^-10 of the tensor's max) is 0.
    scaled = torch.where(scale > 0, blocks / scale, torch.zeros_like(blocks))
    return pack_codes(e2m1_codes(scaled).view(n, k)), block_scale, global_scale


def _byte_values(device: torch.device) -> torch.Tensor:
    """`[256, 2]`: the two e2m1 values (low nibble first) each byte holds."""
    return e2m1_values(unpack_codes(torch.arange(256, dtype=torch.uint8, device=device)[:, None]))


def block_scaled_weight(packed: torch.Tensor, block_scale: torch.Tensor) -> torch.Tensor:
    """`e2m1 · block_scale` as float32 `[N, K]`: the weight without its global scale.
    One gather per byte (the CPU path runs this every forward)."""
    n = packed.shape[0]
    values = _byte_values(packed.device)[packed.long()].view(n, -1, BLOCK)
    return (values * block_scale.float().unsqueeze(-1)).view(n, -1)


def dequantize_nvfp4(
    packed: torch.Tensor, block_scale: torch.Tensor, global_scale: torch.Tensor
) -> torch.Tensor:
    """The float32 weight the three tensors stand for."""
    return block_scaled_weight(packed, block_scale) * global_scale.float().view(-1, 1)


def fp4_gemm_reference(
    x: torch.Tensor,  # [M, K], model dtype
    packed: torch.Tensor,
    block_scale: torch.Tensor,
    global_scale: torch.Tensor,
) -> torch.Tensor:
    """CPU path: x times the block-scaled weight, summed in fp32 (as the kernel's fp32
    accumulator sums the exact products), the global scale applied to the sum, rounded
    once to x's dtype."""
    acc = F.linear(x.float(), block_scaled_weight(packed, block_scale))
    return (acc * global_scale.float().view(1, -1)).to(x.dtype)


def fp4_linear(
    x: torch.Tensor,
    packed: torch.Tensor,
    block_scale: torch.Tensor,
    global_scale: torch.Tensor,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """`x [..., K]` times the NVFP4 weight `[N, K]` (+ bias) in x's dtype."""
    rows = x.reshape(-1, x.shape[-1])
    if x.is_cuda:
        from infleet.engine.kernels.fp4_gemm import fp4_gemm

        y = fp4_gemm(rows, packed, block_scale, global_scale)
    else:
        y = fp4_gemm_reference(rows, packed, block_scale, global_scale)
    if bias is not None:
        y = y + bias
    return y.view(*x.shape[:-1], packed.shape[0])
