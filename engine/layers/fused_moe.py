"""The routed experts of one sparse layer, stacked so all experts run as one grouped GEMM.

Weights: `w13 [E, 2I, H]` (each expert's gate rows, then its up rows: the packed gate/up
of the dense MLP) and `w2 [E, H, I]`. The checkpoint names every expert's matrix
separately; `weight_loader` puts each in place by its shard index (see `expert_shard`).

Forward: the (token, expert) pairs the router picked are sorted by expert, so each
expert's rows are contiguous, and each projection is one grouped matmul over the groups:
`torch.nn.functional.grouped_mm` on CPU, the Triton kernel (engine/kernels/fused_moe.py)
on CUDA. No Python loop over tokens or experts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GATE, UP = 0, 1
ALL_EXPERTS = -1  # the shard index of a tensor that holds every expert (transformers 5)


def expert_shard(expert: int, part: int) -> int:
    """w13's shard index of an expert's gate (part 0) or up (part 1) matrix; w2's shard
    index is the expert number."""
    return 2 * expert + part


def route(
    router_logits: torch.Tensor, top_k: int, normalize: bool, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax in fp32 over all experts, keep the top k (renormalised to sum 1 when asked):
    transformers' order of operations, so the same experts win. -> (weights, expert ids)."""
    probs = torch.softmax(router_logits, dim=-1, dtype=torch.float32)
    weights, ids = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(dtype), ids


def fused_moe_torch(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
) -> torch.Tensor:
    """`x [T, H]` through the experts each token picked -> `[T, H]` (sum over its k)."""
    if not hasattr(F, "grouped_mm"):
        raise RuntimeError(
            f"MoE models on CPU need torch.nn.functional.grouped_mm, which torch "
            f"{torch.__version__} lacks; install the torch of constraints.txt"
        )
    top_k = topk_ids.shape[1]
    flat = topk_ids.flatten()
    order = torch.argsort(flat, stable=True)  # pairs grouped by expert, token order inside
    rows = order // top_k
    ends = torch.bincount(flat, minlength=w13.shape[0]).cumsum(0).to(torch.int32)
    gate_up = F.grouped_mm(x[rows], w13.transpose(1, 2), offs=ends)
    gate, up = gate_up.chunk(2, dim=-1)
    out = F.grouped_mm(F.silu(gate) * up, w2.transpose(1, 2), offs=ends)
    out = out * topk_weights.flatten()[order, None]
    # One add per pair into zeros, in expert order: transformers' order, so fp32 sums agree.
    return torch.zeros_like(x).index_add_(0, rows, out)


class FusedMoE(nn.Module):
    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.num_experts, self.intermediate_size = num_experts, intermediate_size
        e, h, i = num_experts, hidden_size, intermediate_size
        self.w13 = nn.Parameter(torch.empty(e, 2 * i, h), requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(e, h, i), requires_grad=False)
        for param, shards in ((self.w13, 2 * e), (self.w2, e)):
            param.weight_loader = self.weight_loader
            param.num_shards = shards  # load_weights expects each shard exactly once

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard: int = 0) -> None:
        if shard == ALL_EXPERTS:  # already stacked, in this layout
            if param.shape != loaded.shape:
                raise ValueError(
                    f"shape {tuple(loaded.shape)} where {tuple(param.shape)} expected "
                    f"(num_experts={self.num_experts}, hidden_size={self.w2.shape[1]}, "
                    f"expert intermediate_size={self.intermediate_size})"
                )
            param.data.copy_(loaded)
            return
        expert, part = divmod(shard, 2) if param is self.w13 else (shard, 0)
        if not 0 <= expert < self.num_experts:
            raise ValueError(
                f"expert {expert} is beyond the config's num_experts={self.num_experts}"
            )
        target = param.data[expert]
        if param is self.w13:
            size = self.intermediate_size
            target = target.narrow(0, part * size, size)
        if target.shape != loaded.shape:
            raise ValueError(
                f"shape {tuple(loaded.shape)} where {tuple(target.shape)} expected "
                f"(hidden_size={self.w2.shape[1]}, expert intermediate_size={self.intermediate_size})"
            )
        target.copy_(loaded)

    def forward(
        self, x: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor
    ) -> torch.Tensor:
        if x.is_cuda:
            from infleet.engine.kernels.fused_moe import fused_moe

            return fused_moe(x, self.w13, self.w2, topk_weights, topk_ids)
        return fused_moe_torch(x, self.w13, self.w2, topk_weights, topk_ids)
