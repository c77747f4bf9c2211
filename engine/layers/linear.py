"""Linear layers that load their own weights: the seam that quantization, LoRA and tensor
parallelism extend (docs/engine.md, "The linear layer's seams").

`Linear` may pack several checkpoint matrices along its output dim (q/k/v, gate/up): one
matmul instead of three, and the checkpoint names each part by its shard index.

- Weight format ("quant method", `LinearMethod`): how a layer's parameters are created,
  loaded, finished after loading and multiplied. `FloatLinear` (a plain float matrix) is
  the default; a quantized format replaces it per layer.
- Adapter hook: `layer.adapter`, None or an object whose `apply(x, y)` adds a per-token
  delta (LoRA) to the output in place.
- Shard-aware loading: a layer knows `tp_rank`/`tp_size` and which dim it splits
  (`split="output"`: column parallel, `"input"`: row parallel); its weight loader narrows
  a full checkpoint tensor to this rank's shard. A row-parallel layer sums its partial
  outputs over the ranks (all-reduce) after the adapter hook; its bias is added once, by
  rank 0. A packed part may be cut into other pieces than tp_size (`part_shards`): K/V
  heads fewer than the ranks are replicated, one head per group of ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from infleet.engine.distributed.state import all_reduce


class LinearMethod(Protocol):
    def create_weights(
        self,
        layer: Linear,
        input_size: int,
        output_partition_sizes: list[int],
        params_dtype: torch.dtype,
    ) -> None:
        """Register the layer's parameters (this rank's shard), each with a weight_loader."""

    def process_weights_after_loading(self, layer: Linear) -> None:
        """Finish after every tensor loaded (repack, quantize, transpose...)."""

    def apply(self, layer: Linear, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """y = x W^T + bias in this format."""


class Adapter(Protocol):
    def apply(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add this batch's per-token deltas to y in place."""


class FloatLinear:
    """The plain float weight `[sum(output_partition_sizes), input_size]`."""

    def create_weights(
        self,
        layer: Linear,
        input_size: int,
        output_partition_sizes: list[int],
        params_dtype: torch.dtype,
    ) -> None:
        weight = torch.empty(sum(output_partition_sizes), input_size, dtype=params_dtype)
        layer.weight = nn.Parameter(weight, requires_grad=False)
        layer.weight.weight_loader = layer.weight_loader

    def process_weights_after_loading(self, layer: Linear) -> None:
        pass

    def apply(self, layer: Linear, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, layer.weight, bias)


class Linear(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int | Sequence[int],
        bias: bool,
        *,
        quant_method: LinearMethod | None = None,
        split: str = "none",  # "output" (column parallel), "input" (row parallel), "none"
        tp_rank: int = 0,
        tp_size: int = 1,
        part_shards: Sequence[tuple[int, int]] | None = None,  # per packed part: (piece, pieces)
    ) -> None:
        super().__init__()
        full = [out_features] if isinstance(out_features, int) else list(out_features)
        if split not in ("none", "output", "input"):
            raise ValueError(f"split must be none, output or input, got {split!r}")
        if split != "output":
            part_shards = [(0, 1)] * len(full)
        self.part_shards = list(part_shards or [(tp_rank, tp_size)] * len(full))
        divided = (
            list(zip(full, (n for _, n in self.part_shards), strict=True))
            if split == "output"
            else [(in_features, tp_size if split == "input" else 1)]
        )
        if any(size % pieces for size, pieces in divided):
            raise ValueError(
                f"{split} sizes {divided} (size, pieces) do not divide: tp_size {tp_size}"
            )
        self.split, self.tp_rank, self.tp_size = split, tp_rank, tp_size
        self.in_features = in_features // tp_size if split == "input" else in_features
        self.shard_sizes = [s // n for s, (_, n) in zip(full, self.part_shards, strict=True)]
        self.quant_method: LinearMethod = quant_method or FloatLinear()
        self.quant_method.create_weights(
            self, self.in_features, self.shard_sizes, torch.get_default_dtype()
        )
        self.bias = None
        if bias:
            self.bias = nn.Parameter(torch.empty(sum(self.shard_sizes)), requires_grad=False)
            self.bias.weight_loader = self.weight_loader
        self.adapter: Adapter | None = None

    def rank_shard(self, loaded: torch.Tensor, shard: int = 0) -> torch.Tensor:
        """This rank's part of a full checkpoint tensor (packed part `shard` of it)."""
        if self.tp_size == 1 or self.split == "none":
            return loaded
        if self.split == "output":
            piece, pieces = self.part_shards[shard]
            size = loaded.shape[0] // pieces
            return loaded.narrow(0, piece * size, size)
        if loaded.dim() < 2:  # a row-parallel bias is added once, after the reduction
            return loaded
        size = loaded.shape[1] // self.tp_size
        return loaded.narrow(1, self.tp_rank * size, size)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard: int = 0) -> None:
        loaded = self.rank_shard(loaded, shard)
        offset = sum(self.shard_sizes[:shard])
        target = param.data.narrow(0, offset, self.shard_sizes[shard])
        if target.shape != loaded.shape:
            raise ValueError(f"shape {tuple(loaded.shape)} where {tuple(target.shape)} expected")
        target.copy_(loaded)

    def process_weights_after_loading(self) -> None:
        self.quant_method.process_weights_after_loading(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row_parallel = self.split == "input" and self.tp_size > 1
        bias = None if row_parallel and self.tp_rank else self.bias
        y = self.quant_method.apply(self, x, bias)
        if self.adapter is not None:
            self.adapter.apply(x, y)
        return all_reduce(y) if row_parallel else y
