"""The sparse MLP of an MoE layer: a router picks top-k experts per token (FusedMoE runs
them), plus, in Qwen2-MoE, one always-on shared expert scaled by a sigmoid gate.

Module names follow the Qwen-MoE checkpoints (`mlp.gate`, `mlp.experts`,
`mlp.shared_expert`, `mlp.shared_expert_gate`); `weights.py` maps Mixtral's onto them.
"""

from __future__ import annotations

import torch
from torch import nn

from infleet.engine.layers.fused_moe import FusedMoE, route
from infleet.engine.layers.linear import Linear
from infleet.engine.model_config import ModelConfig


class SparseMoeBlock(nn.Module):
    def __init__(self, config: ModelConfig, dense_mlp: type[nn.Module]) -> None:
        super().__init__()
        moe = config.moe
        assert moe is not None, "SparseMoeBlock needs config.moe"
        self.top_k, self.norm_topk_prob = moe.top_k, moe.norm_topk_prob
        self.gate = Linear(config.hidden_size, moe.num_experts, bias=False)  # the router
        self.experts = FusedMoE(moe.num_experts, config.hidden_size, moe.intermediate_size)
        self.shared_expert = self.shared_expert_gate = None
        if moe.shared_intermediate_size:
            self.shared_expert = dense_mlp(config, moe.shared_intermediate_size)
            self.shared_expert_gate = Linear(config.hidden_size, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = route(self.gate(x), self.top_k, self.norm_topk_prob, x.dtype)
        out = self.experts(x, weights, ids)
        if self.shared_expert is not None:
            out = out + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        return out
