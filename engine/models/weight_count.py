"""How many weights a model holds, how many of them are routed experts, and how many one
token uses: the start-up log's line, and what an MoE's memory (all experts are resident)
versus its compute (top-k of them per token) comes to."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from infleet.engine.layers.fused_moe import FusedMoE


@dataclass(slots=True, frozen=True)
class WeightCount:
    total: int  # parameters
    experts: int  # of those, in routed experts
    active_per_token: int  # dense ones plus top_k / num_experts of each layer's experts
    bytes: int  # resident size of all of them

    def describe(self) -> str:
        line = f"weights: {self.total / 1e6:,.1f}M parameters, {self.bytes / 2**20:,.0f} MiB"
        if self.experts:
            line += (
                f" ({self.experts / 1e6:,.1f}M in routed experts; "
                f"{self.active_per_token / 1e6:,.1f}M active per token)"
            )
        return line


def count_weights(model: nn.Module, top_k: int = 0) -> WeightCount:
    """`top_k`: experts each token is routed to (0 for a dense model)."""
    total = sum(p.numel() for p in model.parameters())
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    experts = active_experts = 0
    for module in model.modules():
        if isinstance(module, FusedMoE):
            n = sum(p.numel() for p in module.parameters())
            experts += n
            active_experts += n * top_k // module.num_experts
    return WeightCount(total, experts, total - experts + active_experts, size)
