"""Reference paged attention: per sequence, gather K/V from the blocks and attend in fp32.

Obviously correct rather than fast; tests check the other backends against it.
"""

from __future__ import annotations

import torch

from infleet.engine.attention.context import get_context
from infleet.engine.attention.paged import dequantized, gather_kv, store_kv, visible_keys


class ReferenceBackend:
    name = "reference"

    def forward(
        self,
        q: torch.Tensor,  # [T, H, D]
        k: torch.Tensor,  # [T, Hkv, D]
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        *,
        scale: float,
        sliding_window: int | None,
        k_scale: torch.Tensor | None = None,
        v_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ctx = get_context()
        store_kv(k, v, k_cache, v_cache, ctx.slot_mapping, k_scale, v_scale)
        out = torch.empty_like(q)
        group = q.shape[1] // k.shape[1]
        start = 0
        for i, (q_len, kv_len) in enumerate(
            zip(ctx.query_lens_host, ctx.context_lens_host, strict=True)
        ):
            qi = q[start : start + q_len].float()
            ki = dequantized(gather_kv(k_cache, ctx.block_tables[i], kv_len), k_scale, qi.dtype)
            vi = dequantized(gather_kv(v_cache, ctx.block_tables[i], kv_len), v_scale, qi.dtype)
            ki, vi = ki.float(), vi.float()
            ki = ki.repeat_interleave(group, dim=1)
            vi = vi.repeat_interleave(group, dim=1)
            scores = torch.einsum("qhd,khd->hqk", qi, ki) * scale
            positions = torch.arange(kv_len - q_len, kv_len, device=q.device)
            scores.masked_fill_(~visible_keys(positions, kv_len, sliding_window), float("-inf"))
            probs = scores.softmax(dim=-1)
            out[start : start + q_len] = torch.einsum("hqk,khd->qhd", probs, vi).to(q.dtype)
            start += q_len
        return out
