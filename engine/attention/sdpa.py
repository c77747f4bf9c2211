"""Paged attention on torch's scaled_dot_product_attention over gathered K/V.

Decodes (one query each) run as one padded SDPA call with a key-length mask, which is
where a busy server spends its steps; each prefill chunk runs as its own call, so a long
chunk never pads the decodes beside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infleet.engine.attention.context import AttentionContext, get_context
from infleet.engine.attention.paged import dequantized, gather_kv, store_kv, visible_keys


class SdpaBackend:
    name = "sdpa"

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
        scales = (k_scale, v_scale)
        out = torch.empty_like(q)
        starts, decodes, start = [], [], 0
        for i, q_len in enumerate(ctx.query_lens_host):
            starts.append(start)
            if q_len == 1:
                decodes.append(i)
            start += q_len
        if decodes:
            _decode(q, out, k_cache, v_cache, ctx, decodes, starts, scale, sliding_window, scales)
        for i, q_len in enumerate(ctx.query_lens_host):
            if q_len > 1:
                s = starts[i]
                out[s : s + q_len] = _prefill(
                    q[s : s + q_len], k_cache, v_cache, ctx, i, scale, sliding_window, scales
                )
        return out


def _decode(
    q: torch.Tensor,
    out: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    ctx: AttentionContext,
    seqs: list[int],
    starts: list[int],
    scale: float,
    window: int | None,
    scales: tuple[torch.Tensor | None, torch.Tensor | None],
) -> None:
    rows = [starts[i] for i in seqs]
    lens = [ctx.context_lens_host[i] for i in seqs]
    if len(seqs) == 1 and window is None:  # batch-1 decode: exact length, no mask needed
        i = seqs[0]
        keys = dequantized(gather_kv(k_cache, ctx.block_tables[i], lens[0]), scales[0], q.dtype)
        values = dequantized(gather_kv(v_cache, ctx.block_tables[i], lens[0]), scales[1], q.dtype)
        keys, values = keys.transpose(0, 1)[None], values.transpose(0, 1)[None]
        query = q[rows[0]][None, :, None]  # [1, H, 1, D]
        res = F.scaled_dot_product_attention(query, keys, values, scale=scale, enable_gqa=True)
        out[rows[0]] = res[0, :, 0]
        return
    device = q.device
    block_size = k_cache.shape[1]
    num_blocks = -(-max(lens) // block_size)
    index = torch.tensor(seqs, device=device)
    # -1 padding points at block 0; the length mask hides whatever it holds.
    tables = ctx.block_tables.index_select(0, index)[:, :num_blocks].clamp_min(0).flatten()
    shape = (len(seqs), num_blocks * block_size, *k_cache.shape[2:])
    keys = dequantized(k_cache.index_select(0, tables).view(shape), scales[0], q.dtype)
    values = dequantized(v_cache.index_select(0, tables).view(shape), scales[1], q.dtype)
    keys, values = keys.transpose(1, 2), values.transpose(1, 2)  # [B, Hkv, L, D]
    key_pos = torch.arange(num_blocks * block_size, device=device)[None, :]
    seq_lens = torch.tensor(lens, device=device)[:, None]
    mask = key_pos < seq_lens
    if window is not None:
        mask &= key_pos >= seq_lens - window
    row_index = torch.tensor(rows, device=device)
    query = q.index_select(0, row_index)[:, :, None]  # [B, H, 1, D]
    res = F.scaled_dot_product_attention(
        query, keys, values, attn_mask=mask[:, None, None, :], scale=scale, enable_gqa=True
    )
    out.index_copy_(0, row_index, res[:, :, 0])


def _prefill(
    q: torch.Tensor,  # [q_len, H, D]
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    ctx: AttentionContext,
    i: int,
    scale: float,
    window: int | None,
    scales: tuple[torch.Tensor | None, torch.Tensor | None],
) -> torch.Tensor:
    q_len, kv_len = q.shape[0], ctx.context_lens_host[i]
    keys = dequantized(gather_kv(k_cache, ctx.block_tables[i], kv_len), scales[0], q.dtype)
    values = dequantized(gather_kv(v_cache, ctx.block_tables[i], kv_len), scales[1], q.dtype)
    keys, values = keys.transpose(0, 1)[None], values.transpose(0, 1)[None]
    query = q.transpose(0, 1)[None]
    if kv_len == q_len and window is None:  # no earlier context: plain causal
        res = F.scaled_dot_product_attention(
            query, keys, values, is_causal=True, scale=scale, enable_gqa=True
        )
    else:
        positions = torch.arange(kv_len - q_len, kv_len, device=q.device)
        mask = visible_keys(positions, kv_len, window)
        res = F.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, scale=scale, enable_gqa=True
        )
    return res[0].transpose(0, 1)
