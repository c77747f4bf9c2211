"""Triton fused MoE: every expert's rows in one grouped GEMM per projection.

The (token, expert) pairs the router picked are sorted by expert and each expert's run is
padded to a multiple of `BLOCK_M` (`align_by_expert`), so every `BLOCK_M` tile of the
sorted list belongs to one expert. One program computes a `BLOCK_M x BLOCK_N` tile of
`A[rows] @ W[expert].T` for its tile's rows, gathering A's rows by index (no permuted
copy of the activations) and scattering results back to each pair's slot. The gate/up
projection reads token rows (`pair // top_k`); the down projection reads the pair rows
and multiplies by the router weight before its single rounding to the model dtype; the
top-k results of a token are then summed. Buffers are sized by the worst-case padding,
not the actual one, so nothing waits on the host (CUDA-graph friendly).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from infleet.engine.kernels.interpreter import match_gpu_semantics
from infleet.engine.kernels.silu_mul import silu_mul

match_gpu_semantics()  # the interpreter (CPU only) rounds as the GPU does


@triton.jit(do_not_specialize=["num_pairs"])
def grouped_gemm_kernel(
    a_ptr, w_ptr, c_ptr, sorted_pairs_ptr, tile_experts_ptr, route_weights_ptr,
    num_pairs, N, K,
    stride_am, stride_we, stride_wn, stride_cm,
    A_ROWS_PER_PAIR: tl.constexpr, MUL_ROUTE_WEIGHT: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    tile_m = tl.program_id(0)
    tile_n = tl.program_id(1)
    expert = tl.load(tile_experts_ptr + tile_m).to(tl.int64)
    if expert < 0:  # a tile past the padded end: nothing to do
        return
    pairs = tl.load(sorted_pairs_ptr + tile_m * BLOCK_M + tl.arange(0, BLOCK_M))
    valid = pairs < num_pairs  # padding slots hold num_pairs
    a_rows = (pairs // A_ROWS_PER_PAIR).to(tl.int64)
    cols = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + a_rows[:, None] * stride_am + ks[None, :]
    w_ptrs = w_ptr + expert * stride_we + cols[None, :].to(tl.int64) * stride_wn + ks[:, None]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + ks) < K
        a = tl.load(a_ptrs, mask=valid[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=k_ok[:, None] & (cols[None, :] < N), other=0.0)
        acc = tl.dot(a, w, acc, input_precision=DOT_PRECISION)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    if MUL_ROUTE_WEIGHT:
        route = tl.load(route_weights_ptr + pairs, mask=valid, other=0.0)
        acc = acc * route.to(tl.float32)[:, None]
    c_ptrs = c_ptr + pairs[:, None].to(tl.int64) * stride_cm + cols[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=valid[:, None] & (cols[None, :] < N))


def align_by_expert(
    topk_ids: torch.Tensor, num_experts: int, block_m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (sorted_pairs, tile_experts). `sorted_pairs` lists pair indices (token * k + j)
    grouped by expert, each group padded with `num_pairs` to a multiple of `block_m`;
    `tile_experts[t]` is the expert of tile t, -1 past the end."""
    flat = topk_ids.flatten()
    num_pairs = flat.numel()
    # scatter_add, not bincount: bincount reads the max id on the host (no CUDA graphs).
    counts = torch.zeros(num_experts, dtype=torch.int64, device=flat.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    padded_ends = padded.cumsum(0)
    order = torch.argsort(flat, stable=True)
    experts = flat[order]
    rank_in_expert = (
        torch.arange(num_pairs, device=flat.device) - (counts.cumsum(0) - counts)[experts]
    )
    capacity = num_pairs + num_experts * (block_m - 1)  # the worst case: every group padded
    capacity = (capacity + block_m - 1) // block_m * block_m
    sorted_pairs = torch.full((capacity,), num_pairs, dtype=torch.int32, device=flat.device)
    sorted_pairs[(padded_ends - padded)[experts] + rank_in_expert] = order.to(torch.int32)
    tile_starts = torch.arange(0, capacity, block_m, device=flat.device)
    tile_experts = torch.searchsorted(padded_ends, tile_starts, right=True)
    tile_experts = torch.where(tile_experts < num_experts, tile_experts, -1).to(torch.int32)
    return sorted_pairs, tile_experts


def grouped_gemm(
    a: torch.Tensor,
    w: torch.Tensor,
    sorted_pairs: torch.Tensor,
    tile_experts: torch.Tensor,
    num_pairs: int,
    *,
    a_rows_per_pair: int,
    route_weights: torch.Tensor | None = None,
    block_m: int,
) -> torch.Tensor:
    """`out[p] = A[p // a_rows_per_pair] @ W[expert(p)].T (* route_weights[p])`, `[P, N]`."""
    n, k = w.shape[1:]
    if a.stride(-1) != 1 or w.stride(-1) != 1:
        raise ValueError("grouped_gemm needs a contiguous last dim in A and W")
    out = a.new_empty(num_pairs, n)
    block_n = max(16, min(128, triton.next_power_of_2(n)))
    block_k = max(16, min(64, triton.next_power_of_2(k)))
    grid = (tile_experts.numel(), triton.cdiv(n, block_n))
    weights = route_weights if route_weights is not None else out  # unread when not multiplying
    grouped_gemm_kernel[grid](
        a, w, out, sorted_pairs, tile_experts, weights,
        num_pairs, n, k,
        a.stride(0), w.stride(0), w.stride(1), out.stride(0),
        A_ROWS_PER_PAIR=a_rows_per_pair, MUL_ROUTE_WEIGHT=route_weights is not None,
        DOT_PRECISION="ieee" if a.dtype == torch.float32 else "tf32",  # fp32 stays exact
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4,
    )  # fmt: skip
    return out


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    block_m: int | None = None,
) -> torch.Tensor:
    """`x [T, H]`, `w13 [E, 2I, H]`, `w2 [E, H, I]`, router picks `[T, k]` -> `[T, H]`.
    `block_m`: rows per tile (default: 16 for decode-sized batches, up to 64 when each
    expert gets many rows, so a weight tile is read once per 64 rows, not per 16)."""
    num_tokens, top_k = topk_ids.shape
    num_pairs = num_tokens * top_k
    if num_pairs == 0:
        return torch.zeros_like(x)
    if block_m is None:
        block_m = min(64, max(16, triton.next_power_of_2(num_pairs // w13.shape[0])))
    sorted_pairs, tile_experts = align_by_expert(topk_ids, w13.shape[0], block_m)
    gate_up = grouped_gemm(
        x, w13, sorted_pairs, tile_experts, num_pairs, a_rows_per_pair=top_k, block_m=block_m
    )
    down = grouped_gemm(
        silu_mul(gate_up), w2, sorted_pairs, tile_experts, num_pairs,
        a_rows_per_pair=1, route_weights=topk_weights.flatten().contiguous(), block_m=block_m,
    )  # fmt: skip
    return down.view(num_tokens, top_k, -1).sum(dim=1)
