"""FP8 (e4m3) KV cache: the dtype, its scales, and quantize/dequantize in torch.

A cache entry stores `x / scale` rounded to e4m3 (saturated at ±448); reading multiplies
by `scale` again. A scale is a float32 tensor of shape `[1]` (one per layer, "per-tensor")
or `[num_kv_heads]` ("per-head"); both kernels and torch code broadcast it over
`[..., num_kv_heads, head_dim]`. e4m3 keeps 3 mantissa bits at any magnitude between
2^-6 * scale and 448 * scale, so the scale matters for range (no overflow, few
subnormals), not for relative precision.
"""

from __future__ import annotations

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448


def kv_cache_torch_dtype(kv_cache_dtype: str, model_dtype: torch.dtype) -> torch.dtype:
    """`--kv-cache-dtype` (`auto` = the model's dtype, or `fp8`) as a torch dtype."""
    if kv_cache_dtype == "auto":
        return model_dtype
    if kv_cache_dtype in ("fp8", "fp8_e4m3"):
        return FP8_DTYPE
    raise ValueError(f"--kv-cache-dtype: {kv_cache_dtype!r} is not one of auto, fp8")


def scales_from_amax(amax: torch.Tensor, headroom: float = 2.0) -> torch.Tensor:
    """Per-head (or per-tensor) scales from observed absolute maxima: the largest value
    lands at 448 / headroom, leaving room for activations larger than those observed."""
    return (amax.float() * headroom / FP8_MAX).clamp_min(torch.finfo(torch.float32).tiny)


def _head_scale(scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Scale `[1]` or `[Hkv]` shaped to broadcast over `x [..., Hkv, D]`."""
    return scale.to(device=x.device, dtype=torch.float32)[:, None]


def quantize_fp8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """`x [..., Hkv, D]` -> e4m3 of `x / scale`, saturated (never inf/NaN)."""
    scaled = x.float() / _head_scale(scale, x)
    return scaled.clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)


def dequantize_fp8(x: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """e4m3 `x [..., Hkv, D]` -> `x * scale` in `dtype`."""
    return (x.float() * _head_scale(scale, x)).to(dtype)
