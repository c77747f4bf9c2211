"""The fused MoE: the Triton grouped GEMM (Triton's interpreter on a CUDA-less machine)
against the torch grouped_mm path and a float64 per-pair reference.

Bounds are relative errors ‖out − ref‖/‖ref‖ against the float64 reference: 1e-6 in fp32
(both sum the same products in another order; measured ~2.3e-7), 1e-2 in bf16 and 2e-3 in
fp16 (the gate/up result and the activation are rounded to the model dtype, as the torch
path rounds them; measured up to 3.7e-3 and 4.5e-4). Triton against torch: twice that.
"""

from __future__ import annotations

import pytest
import torch

from infleet.engine.kernels.fused_moe import align_by_expert, fused_moe
from infleet.engine.kernels.reference import fused_moe_ref
from infleet.engine.layers.fused_moe import fused_moe_torch, route
from tests.engine.kernel_cases import DEVICE, relative_error

BOUND = {torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _case(tokens: int, experts: int, top_k: int, hidden: int, inter: int, dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, hidden, generator=gen)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=gen) / hidden**0.5
    w2 = torch.randn(experts, hidden, inter, generator=gen) / inter**0.5
    router = torch.randn(tokens, experts, generator=gen) * 2
    weights, ids = route(router, top_k, normalize=True, dtype=dtype)
    on = [t.to(DEVICE) for t in (x.to(dtype), w13.to(dtype), w2.to(dtype), weights, ids)]
    return on


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "tokens,experts,top_k,hidden,inter",
    [
        (1, 8, 2, 64, 48),  # a decode: most experts get no rows
        (37, 8, 2, 48, 40),  # ragged groups, hidden and I not multiples of the tiles
        (20, 4, 4, 32, 32),  # top-k = every expert
        (160, 4, 2, 32, 48),  # ~80 rows per expert: 64-row tiles
    ],
)
def test_triton_matches_torch_path_and_float64_reference(
    dtype, tokens, experts, top_k, hidden, inter
):
    x, w13, w2, weights, ids = _case(tokens, experts, top_k, hidden, inter, dtype, seed=tokens)
    ref = fused_moe_ref(x, w13, w2, weights, ids, compute_dtype=torch.float64)
    triton_out = fused_moe(x, w13, w2, weights, ids)
    assert triton_out.dtype == dtype and triton_out.shape == x.shape
    assert relative_error(triton_out, ref) < BOUND[dtype]
    torch_out = fused_moe_torch(x, w13, w2, weights, ids)
    assert relative_error(torch_out, ref) < BOUND[dtype]
    assert relative_error(triton_out, torch_out) < 2 * BOUND[dtype]


def test_align_by_expert_groups_pairs_into_single_expert_tiles():
    ids = torch.tensor([[2, 0], [2, 1], [0, 2], [2, 0]])
    pairs, tiles = align_by_expert(ids, num_experts=4, block_m=4)
    num_pairs = ids.numel()
    # expert 0: pairs 1, 4, 7 (padded to 4); expert 1: pair 3; expert 2: pairs 0, 2, 5, 6
    assert pairs[:12].tolist() == [1, 4, 7, 8, 3, 8, 8, 8, 0, 2, 5, 6]
    assert (pairs[12:] == num_pairs).all()
    assert tiles.tolist()[:3] == [0, 1, 2] and all(t == -1 for t in tiles.tolist()[3:])
    assert pairs.numel() == tiles.numel() * 4 >= num_pairs + 4 * 3  # worst-case capacity


def test_no_tokens():
    x, w13, w2, weights, ids = _case(3, 4, 2, 32, 32, torch.float32, seed=0)
    assert fused_moe(x[:0], w13, w2, weights[:0], ids[:0]).shape == (0, 32)
    assert fused_moe_torch(x[:0], w13, w2, weights[:0], ids[:0]).shape == (0, 32)
