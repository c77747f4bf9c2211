"""The attention op inside a decoder layer: cache handles plus a backend call."""

from __future__ import annotations

import torch
from torch import nn

from infleet.engine.attention.backends import AttentionBackend


class PagedAttention(nn.Module):
    """Holds one layer's paged K/V cache; the runner assigns `k_cache`, `v_cache`, `backend`."""

    def __init__(
        self, num_heads: int, num_kv_heads: int, head_dim: int, sliding_window: int | None
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.sliding_window = sliding_window
        self.k_cache = torch.empty(0)
        self.v_cache = torch.empty(0)
        # fp8 caches only: float32 scales `[1]` or `[num_kv_heads]` (engine/kernels/fp8.py).
        self.k_scale: torch.Tensor | None = None
        self.v_scale: torch.Tensor | None = None
        self.backend: AttentionBackend | None = None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q `[T, H*D]`, k/v `[T, Hkv*D]` -> `[T, H*D]`."""
        if self.backend is None:
            raise RuntimeError("attention has no KV cache: run the model through ModelRunner")
        t = q.shape[0]
        out = self.backend.forward(
            q.view(t, self.num_heads, self.head_dim),
            k.view(t, self.num_kv_heads, self.head_dim),
            v.view(t, self.num_kv_heads, self.head_dim),
            self.k_cache,
            self.v_cache,
            scale=self.scale,
            sliding_window=self.sliding_window,
            k_scale=self.k_scale,
            v_scale=self.v_scale,
        )
        return out.reshape(t, self.num_heads * self.head_dim)
