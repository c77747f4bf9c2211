"""Rotary position embeddings (rotate-half layout) with linear and Llama-3 frequency scaling."""

from __future__ import annotations

import math

import torch
from torch import nn

from infleet.engine.model_config import RopeScaling


def inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / (theta**exponents)
    if scaling is None:
        return inv_freq
    if scaling.rope_type == "linear":  # positions stretched by `factor`
        return inv_freq / scaling.factor
    return _llama3(inv_freq, scaling)


def _llama3(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    """Llama 3.1: long wavelengths slowed by `factor`, short ones kept, a smooth ramp between."""
    old_len = s.original_max_position_embeddings
    wavelen = 2 * math.pi / inv_freq
    long_cut = old_len / s.low_freq_factor  # wavelengths above this are scaled fully
    short_cut = old_len / s.high_freq_factor  # wavelengths below this are kept
    scaled = torch.where(wavelen > long_cut, inv_freq / s.factor, inv_freq)
    ramp = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    blended = (1 - ramp) * scaled / s.factor + ramp * scaled
    between = (wavelen >= short_cut) & (wavelen <= long_cut)
    return torch.where(between, blended, scaled)


class RotaryEmbedding(nn.Module):
    def __init__(
        self, head_dim: int, max_positions: int, theta: float, scaling: RopeScaling | None
    ) -> None:
        super().__init__()
        inv_freq = inverse_frequencies(head_dim, theta, scaling)
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq.float())
        # Computed in fp32, stored in the model dtype: the same rounding transformers applies.
        dtype = torch.get_default_dtype()
        self.register_buffer("cos", freqs.cos().to(dtype), persistent=False)
        self.register_buffer("sin", freqs.sin().to(dtype), persistent=False)

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Rotate x `[T, heads, head_dim]` by each token's position."""
        cos = self.cos[positions].unsqueeze(1)
        sin = self.sin[positions].unsqueeze(1)
        first, second = x.chunk(2, dim=-1)
        return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)

    def rotate_qk(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q and k; on CUDA in place, both in one Triton launch with the same
        rounding (engine/kernels/rope.py)."""
        if q.is_cuda:
            from infleet.engine.kernels.rope import apply_rope

            apply_rope(positions, q, k, self.cos, self.sin)
            return q, k
        return self(positions, q), self(positions, k)
