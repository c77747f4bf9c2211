"""Pure-torch definitions of what each Triton kernel computes.

Written for clarity, not speed: tests run them in float64 on upcast inputs and compare
the kernels against them. Each follows the rounding order of the engine's torch layers
(engine/layers), so a kernel that matches its reference also matches the CPU path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infleet.engine.kernels.fp8 import FP8_DTYPE, dequantize_fp8, quantize_fp8


def write_kv_ref(
    key: torch.Tensor,  # [T, Hkv, D]
    value: torch.Tensor,
    k_cache: torch.Tensor,  # [num_blocks, block_size, Hkv, D]
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,  # int64 [T]; negative = skip (padding)
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
) -> None:
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    for new, cache, scale in ((key, k_cache, k_scale), (value, v_cache, v_scale)):
        rows = new[keep]
        if cache.dtype == FP8_DTYPE:
            rows = quantize_fp8(rows, scale)
        flat = cache.view(-1, *cache.shape[2:])
        if cache.dtype == FP8_DTYPE:  # index_copy_ has no fp8 kernel: move the bytes
            flat.view(torch.uint8).index_copy_(0, slots, rows.view(torch.uint8))
        else:
            flat.index_copy_(0, slots, rows.to(cache.dtype))


def read_cache_ref(
    cache: torch.Tensor, table: list[int], length: int, scale: torch.Tensor | None, dtype
) -> torch.Tensor:
    """One sequence's first `length` cached rows `[length, Hkv, D]` in `dtype`."""
    block_size = cache.shape[1]
    blocks = table[: -(-length // block_size)]
    rows = cache[torch.tensor(blocks, dtype=torch.long, device=cache.device)].flatten(0, 1)
    rows = rows[:length]
    if cache.dtype == FP8_DTYPE:
        return dequantize_fp8(rows, scale, dtype)
    return rows.to(dtype)


def paged_attention_ref(
    q: torch.Tensor,  # [T, Hq, D]
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,  # int32 [B+1]
    context_lens: torch.Tensor,  # int32 [B]
    block_tables: torch.Tensor,  # int32 [B, max_blocks]
    *,
    scale: float,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
    sliding_window: int | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Causal attention of each sequence's queries over its whole cached context
    (docs/contracts.md): query i of a `q_len` chunk sits at `context_len - q_len + i`."""
    out = torch.empty_like(q)
    group = q.shape[1] // k_cache.shape[2]
    cu = cu_seqlens_q.tolist()
    for s, ctx_len in enumerate(context_lens.tolist()):
        q_len = cu[s + 1] - cu[s]
        if q_len == 0:
            continue
        table = block_tables[s].tolist()
        keys = read_cache_ref(k_cache, table, ctx_len, k_scale, compute_dtype)
        values = read_cache_ref(v_cache, table, ctx_len, v_scale, compute_dtype)
        keys = keys.repeat_interleave(group, dim=1)
        values = values.repeat_interleave(group, dim=1)
        queries = q[cu[s] : cu[s + 1]].to(compute_dtype)
        scores = torch.einsum("qhd,khd->hqk", queries, keys) * scale
        q_pos = torch.arange(ctx_len - q_len, ctx_len, device=q.device)[:, None]
        k_pos = torch.arange(ctx_len, device=q.device)[None, :]
        visible = k_pos <= q_pos
        if sliding_window is not None:
            visible &= q_pos - k_pos < sliding_window
        probs = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
        out[cu[s] : cu[s + 1]] = torch.einsum("hqk,khd->qhd", probs, values).to(q.dtype)
    return out


def rms_norm_ref(
    x: torch.Tensor,  # [T, H]
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm in `compute_dtype`, rounded like engine/layers/norm.py (and transformers):
    the residual sum and the normalized value are rounded to x's dtype before the weight
    multiplies. With a residual, returns `(normed, x + residual)`."""
    dtype = x.dtype
    if residual is not None:
        x = (x.to(compute_dtype) + residual.to(compute_dtype)).to(dtype)
    h = x.to(compute_dtype)
    normed = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    out = (weight.to(compute_dtype) * normed.to(dtype).to(compute_dtype)).to(dtype)
    return out if residual is None else (out, x)


def rope_ref(
    positions: torch.Tensor,  # int64 [T]
    x: torch.Tensor,  # [T, heads, D]
    cos: torch.Tensor,  # [max_positions, D/2]
    sin: torch.Tensor,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Rotate-half RoPE (engine/layers/rotary.py): each product and the sum rounded to
    x's dtype, as the torch layer does when it computes in the model dtype."""
    dtype = x.dtype
    c = cos[positions].to(dtype).to(compute_dtype)[:, None]
    s = sin[positions].to(dtype).to(compute_dtype)[:, None]
    first, second = x.to(compute_dtype).chunk(2, dim=-1)

    def rnd(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype).to(compute_dtype)

    out_first = rnd(first * c) - rnd(second * s)
    out_second = rnd(second * c) + rnd(first * s)
    return torch.cat((out_first, out_second), dim=-1).to(dtype)


def silu_mul_ref(x: torch.Tensor, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`[T, 2I]` -> `silu(x[:, :I]) * x[:, I:]`, silu rounded to x's dtype first (torch's
    order for `act(gate) * up`)."""
    gate, up = x.to(compute_dtype).chunk(2, dim=-1)
    activated = F.silu(gate).to(x.dtype).to(compute_dtype)
    return (activated * up).to(x.dtype)


def fused_moe_ref(
    x: torch.Tensor,  # [T, H]
    w13: torch.Tensor,  # [E, 2I, H]: gate rows, then up rows
    w2: torch.Tensor,  # [E, H, I]
    topk_weights: torch.Tensor,  # [T, k]
    topk_ids: torch.Tensor,  # [T, k]
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Each token through each expert it picked, one (token, expert) pair at a time, the
    pair's output weighted and summed; the gate/up result and the activation are rounded to
    x's dtype as the torch layers round them."""
    out = torch.zeros(x.shape, dtype=compute_dtype, device=x.device)
    for t in range(x.shape[0]):
        for j in range(topk_ids.shape[1]):
            e = int(topk_ids[t, j])
            gate_up = (w13[e].to(compute_dtype) @ x[t].to(compute_dtype)).to(x.dtype)
            hidden = silu_mul_ref(gate_up[None], compute_dtype)[0]
            down = w2[e].to(compute_dtype) @ hidden.to(compute_dtype)
            out[t] += down * topk_weights[t, j].to(compute_dtype)
    return out.to(x.dtype)
