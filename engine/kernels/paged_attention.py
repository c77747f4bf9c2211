"""The paged-attention launcher: tile shapes, the split-KV choice, argument checks.

The kernels themselves, and how they walk the block tables, are in
paged_attention_kernels.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from infleet.engine.kernels.fp8 import FP8_DTYPE
from infleet.engine.kernels.paged_attention_kernels import (
    combine_splits_kernel,
    paged_attention_kernel,
)

LOG2_E = 1.4426950408889634
MAX_SPLITS = 16


@dataclass(slots=True, frozen=True)
class LaunchConfig:
    """Keys per tile and the launch shape. Defaults are first guesses for Hopper, to be
    swept on the device (docs/gpu.md)."""

    block_n: int = 64
    num_warps: int = 4
    num_stages: int = 2


def choose_num_splits(num_programs: int, max_context_len: int, num_sms: int) -> int:
    """Split each tile's keys when the grid alone would leave SMs idle, keeping at least
    256 keys per split (below that the merge costs more than the parallelism wins).
    A power of two, so the merge kernel sums over a plain range."""
    if num_programs >= num_sms:
        return 1
    want = min(-(-num_sms // num_programs), max_context_len // 256, MAX_SPLITS)
    return 1 << max(want, 1).bit_length() - 1


def paged_attention(
    q: torch.Tensor,  # [T, Hq, D]
    k_cache: torch.Tensor,  # [num_blocks, block_size, Hkv, D], bf16/fp16/fp32 or e4m3
    v_cache: torch.Tensor,
    cu_seqlens_q: torch.Tensor,  # int32 [B+1]
    context_lens: torch.Tensor,  # int32 [B]
    block_tables: torch.Tensor,  # int32 [B, max_blocks]
    *,
    scale: float,
    k_scale: torch.Tensor | None = None,  # float32 [1] or [Hkv], fp8 caches only
    v_scale: torch.Tensor | None = None,
    sliding_window: int | None = None,
    num_splits: int = 1,
    out: torch.Tensor | None = None,
    launch: LaunchConfig | None = None,
) -> torch.Tensor:
    """Attention of every query in the flat batch over its sequence's paged context
    (layout and causality as pinned in docs/contracts.md). No host sync: safe to capture
    in a CUDA graph. `num_splits` (a power of two) splits each tile's keys; `launch`
    overrides the tile and launch shape (engine/bench/gpu_kernels.py sweeps it)."""
    num_tokens, num_q_heads, head_dim = q.shape
    num_kv_heads, page = k_cache.shape[2], k_cache.shape[1]
    num_seqs = cu_seqlens_q.shape[0] - 1
    if num_q_heads % num_kv_heads:
        raise ValueError(f"{num_q_heads} query heads do not group over {num_kv_heads} KV heads")
    if num_splits < 1 or num_splits & (num_splits - 1):
        raise ValueError(f"num_splits must be a power of two, got {num_splits}")
    if q.stride(-1) != 1 or k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("q and the caches need a contiguous head_dim")
    is_fp8 = k_cache.dtype == FP8_DTYPE
    if is_fp8 and (k_scale is None or v_scale is None):
        raise ValueError("an fp8 KV cache needs k_scale and v_scale")
    out = torch.empty_like(q) if out is None else out
    group = num_q_heads // num_kv_heads
    decode_only = num_tokens == num_seqs
    if decode_only:  # one query per tile, its group of heads as the rows
        block_q, group_pad = 1, max(16, triton.next_power_of_2(group))
    else:  # prefill chunks (and any decodes beside them): 64 rows of tokens x heads
        group_pad = triton.next_power_of_2(group)
        block_q = max(1, 64 // group_pad)
    launch = launch or LaunchConfig()
    part_acc = part_ml = out  # unused unless split
    if num_splits > 1:
        part_acc = q.new_empty(num_tokens, num_q_heads, num_splits, head_dim, dtype=torch.float32)
        part_ml = q.new_empty(num_tokens, num_q_heads, num_splits, 2, dtype=torch.float32)
    scales = (k_scale, v_scale) if is_fp8 else (q, q)  # pointers unused without HAS_SCALES
    block_d = max(16, triton.next_power_of_2(head_dim))
    num_tiles = num_seqs if decode_only else num_tokens // block_q + num_seqs
    grid = (num_tiles, num_kv_heads, num_splits)
    paged_attention_kernel[grid](
        q, k_cache, v_cache, out, part_acc, part_ml,
        cu_seqlens_q, context_lens, block_tables, scales[0], scales[1],
        scale * LOG2_E, num_seqs, max(num_seqs - 1, 1).bit_length() + 1,
        q.stride(0), q.stride(1), *k_cache.stride()[:3], *v_cache.stride()[:3],
        out.stride(0), out.stride(1), block_tables.stride(0),
        *[int(is_fp8 and s.numel() > 1) for s in (k_scale, v_scale)],
        GROUP=group, GROUP_PAD=group_pad, BLOCK_Q=block_q, BLOCK_N=launch.block_n,
        HEAD_DIM=head_dim, BLOCK_D=block_d, PAGE=page, WINDOW=sliding_window or 0,
        NUM_SPLITS=num_splits, HAS_SCALES=is_fp8, DECODE_ONLY=decode_only,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=launch.num_warps, num_stages=launch.num_stages,
    )  # fmt: skip
    if num_splits > 1:
        combine_splits_kernel[(num_tokens, num_q_heads)](
            part_acc, part_ml, out, out.stride(0), out.stride(1),
            NUM_SPLITS=num_splits, HEAD_DIM=head_dim, BLOCK_D=block_d,
        )  # fmt: skip
    return out
