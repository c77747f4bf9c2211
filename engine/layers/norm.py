"""RMSNorm, computed in fp32 and cast back (the transformers order, so bf16 results match).

With a residual it first adds it (`x + residual`, rounded to the model dtype as the
decoder's own add was) and returns the sum as the next residual. On CUDA both run as one
Triton kernel (engine/kernels/rms_norm.py) with the same rounding.
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim), requires_grad=False)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if x.is_cuda:
            from infleet.engine.kernels.rms_norm import rms_norm

            rows = x.reshape(-1, x.shape[-1])
            if residual is None:
                return rms_norm(rows, self.weight, self.eps).view(x.shape)
            normed, residual = rms_norm(rows, self.weight, self.eps, residual.view(rows.shape))
            return normed.view(x.shape), residual.view(x.shape)
        if residual is not None:
            x = residual = x + residual
            return self.forward(x), residual
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)
