"""The routed experts of one sparse layer, stacked so all experts run as one grouped GEMM.

Weights: `w13 [E, 2I, H]` (each expert's gate rows, then its up rows: the packed gate/up
of the dense MLP) and `w2 [E, H, I]`. The checkpoint names every expert's matrix
separately; `weight_loader` puts each in place by its shard index (see `expert_shard`).

Forward: the (token, expert) pairs the router picked are sorted by expert, so each
expert's rows are contiguous, and each projection is one grouped matmul over the groups:
`torch.nn.functional.grouped_mm` on CPU, the Triton kernel (engine/kernels/fused_moe.py)
on CUDA. No Python loop over tokens or experts.

Tensor parallel: every rank sees every token (attention's output is already summed over
the ranks), so dispatch needs no exchange; each rank computes its part of each token's
expert sum and one all-reduce combines them. Without expert parallelism a rank holds a
1/TP slice of every expert's intermediate dim; with it (`--enable-expert-parallel`) a rank
holds E/TP whole experts and runs only the (token, expert) pairs routed to them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from infleet.engine.distributed.state import all_reduce, tp

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
    first_expert: int = 0,
) -> torch.Tensor:
    """`x [T, H]` through the experts each token picked -> `[T, H]` (sum over its k).
    `w13`/`w2` hold experts first_expert.. (expert parallel): other pairs are skipped."""
    if not hasattr(F, "grouped_mm"):
        raise RuntimeError(
            f"MoE models on CPU need torch.nn.functional.grouped_mm, which torch "
            f"{torch.__version__} lacks; install the torch of constraints.txt"
        )
    top_k = topk_ids.shape[1]
    flat = topk_ids.flatten() - first_expert
    pairs = ((flat >= 0) & (flat < w13.shape[0])).nonzero().squeeze(1)  # this rank's pairs
    flat = flat[pairs]
    order = pairs[torch.argsort(flat, stable=True)]  # grouped by expert, token order inside
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
        t = tp()
        self.num_experts, self.intermediate_size = num_experts, intermediate_size
        self.tp_size, self.tp_rank = t.size, t.rank
        self.expert_parallel = t.expert_parallel and t.size > 1
        # This rank's experts [first_expert, first_expert + local_experts) and its slice of
        # each one's intermediate dim (the whole of it under expert parallelism).
        split = 1 if self.expert_parallel else t.size
        self.local_experts = num_experts // t.size if self.expert_parallel else num_experts
        self.first_expert = t.rank * self.local_experts if self.expert_parallel else 0
        self.local_intermediate = intermediate_size // split
        e, h, i = self.local_experts, hidden_size, self.local_intermediate
        self.w13 = nn.Parameter(torch.empty(e, 2 * i, h), requires_grad=False)
        self.w2 = nn.Parameter(torch.empty(e, h, i), requires_grad=False)
        for param, shards in ((self.w13, 2 * num_experts), (self.w2, num_experts)):
            param.weight_loader = self.weight_loader
            param.num_shards = shards  # load_weights expects each shard exactly once

    def _slice(self, loaded: torch.Tensor, is_w13: bool) -> torch.Tensor:
        """This rank's slice of one expert's (or stacked experts') intermediate dim."""
        if self.local_intermediate == self.intermediate_size:
            return loaded
        dim = -2 if is_w13 else -1
        size = self.local_intermediate
        return loaded.narrow(dim, self.tp_rank * size, size)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard: int = 0) -> None:
        is_w13 = param is self.w13
        h, i = self.w2.shape[1], self.intermediate_size
        sizes = f"hidden_size={h}, expert intermediate_size={i}"
        if shard == ALL_EXPERTS:  # already stacked, in this layout
            full = (self.num_experts, 2 * i, h) if is_w13 else (self.num_experts, h, i)
            if tuple(loaded.shape) != full:
                raise ValueError(
                    f"shape {tuple(loaded.shape)} where {full} expected "
                    f"(num_experts={self.num_experts}, {sizes})"
                )
            mine = loaded.narrow(0, self.first_expert, self.local_experts)
            if is_w13:
                gate, up = mine.chunk(2, dim=1)
                mine = torch.cat([self._slice(gate, True), self._slice(up, True)], dim=1)
            param.data.copy_(self._slice(mine, False) if not is_w13 else mine)
            return
        expert, part = divmod(shard, 2) if is_w13 else (shard, 0)
        if not 0 <= expert < self.num_experts:
            raise ValueError(
                f"expert {expert} is beyond the config's num_experts={self.num_experts}"
            )
        full = (i, h) if is_w13 else (h, i)
        if tuple(loaded.shape) != full:
            raise ValueError(f"shape {tuple(loaded.shape)} where {full} expected ({sizes})")
        local = expert - self.first_expert
        if not 0 <= local < self.local_experts:
            return  # another rank's expert
        target = param.data[local]
        if is_w13:
            size = self.local_intermediate
            target = target.narrow(0, part * size, size)
        target.copy_(self._slice(loaded, is_w13))

    def forward(
        self, x: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor
    ) -> torch.Tensor:
        if x.is_cuda:
            from infleet.engine.kernels.fused_moe import fused_moe

            if self.expert_parallel:  # other ranks' pairs: weight 0 on a local expert
                local = topk_ids - self.first_expert
                mine = (local >= 0) & (local < self.local_experts)
                topk_ids = torch.where(mine, local, 0)
                topk_weights = torch.where(mine, topk_weights, 0)
            out = fused_moe(x, self.w13, self.w2, topk_weights, topk_ids)
        else:
            out = fused_moe_torch(x, self.w13, self.w2, topk_weights, topk_ids, self.first_expert)
        return all_reduce(out) if self.tp_size > 1 else out
