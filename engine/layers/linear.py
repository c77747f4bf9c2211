"""Linear layers that load their own weights (so tensor parallelism can shard at load time).

`Linear` may pack several checkpoint matrices along its output dim (q/k/v, gate/up): one
matmul instead of three, and the checkpoint names each part by its shard index.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Linear(nn.Module):
    # A quantized weight format (engine/quantization/methods.py) replaces `weight` with its
    # own parameters and does the multiply; None is the float layer.
    quant_method = None

    def __init__(self, in_features: int, out_features: int | Sequence[int], bias: bool) -> None:
        super().__init__()
        self.in_features = in_features
        self.shard_sizes = [out_features] if isinstance(out_features, int) else list(out_features)
        out = sum(self.shard_sizes)
        self.weight = nn.Parameter(torch.empty(out, in_features), requires_grad=False)
        self.weight.weight_loader = self.weight_loader
        self.bias = None
        if bias:
            self.bias = nn.Parameter(torch.empty(out), requires_grad=False)
            self.bias.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard: int = 0) -> None:
        offset = sum(self.shard_sizes[:shard])
        target = param.data.narrow(0, offset, self.shard_sizes[shard])
        if target.shape != loaded.shape:
            raise ValueError(f"shape {tuple(loaded.shape)} where {tuple(target.shape)} expected")
        target.copy_(loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quant_method is not None:
            return self.quant_method.apply(self, x, self.bias)
        return F.linear(x, self.weight, self.bias)
