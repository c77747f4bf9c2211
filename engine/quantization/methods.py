"""FP8 and FP4 weight formats of the linear layer (`LinearMethod`s of
engine/layers/linear.py): create the layer's parameters, load checkpoint tensors into them
shard by shard, finish after loading, and multiply.

A method is made per layer (it knows the layer's packed shard sizes, which its loaders
narrow to). Online quantization keeps the layer's float `weight` for loading and
quantizes it in `process_weights_after_loading`; a pre-quantized checkpoint's tensors
load into parameters named as the checkpoint names them, renamed to the canonical ones
(`weight`/`weight_scale` for FP8; `weight_packed`/`weight_scale`/`weight_global_scale`
for FP4) once loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from infleet.engine.kernels.fp8 import FP8_DTYPE
from infleet.engine.layers.linear import FloatLinear
from infleet.engine.quantization.checkpoint import QuantScheme
from infleet.engine.quantization.fp4 import BLOCK, fp4_linear, quantize_nvfp4
from infleet.engine.quantization.fp8 import fp8_linear, quantize_rows

# role -> (dtype, columns given K, or None for one float32 per output row)
_FP8_PARAMS = {"weight": (FP8_DTYPE, lambda k: k), "weight_scale": (torch.float32, None)}
_FP4_PARAMS = {
    "weight_packed": (torch.uint8, lambda k: k // 2),
    "weight_scale": (FP8_DTYPE, lambda k: k // BLOCK),
    "weight_global_scale": (torch.float32, None),
}


class QuantLinearMethod:
    """Shared loading; subclasses say which parameters they hold and how they multiply."""

    params: ClassVar[dict[str, tuple[torch.dtype, Callable[[int], int] | None]]]

    def __init__(self, scheme: QuantScheme, shard_sizes: list[int]) -> None:
        self.scheme = scheme
        self.shard_sizes = list(shard_sizes)  # load_weights counts each parameter's shards

    def create_weights(
        self,
        layer: nn.Module,
        input_size: int,
        output_partition_sizes: list[int],
        params_dtype: torch.dtype,
    ) -> None:
        """The checkpoint's tensors, named as it names them; online: the float weight,
        loaded as a float layer's and quantized once loaded."""
        if self.params is _FP4_PARAMS and input_size % (2 * BLOCK):
            raise ValueError(f"NVFP4 needs the input dim to be a multiple of 32, got {input_size}")
        if not self.scheme.prequantized:
            FloatLinear().create_weights(layer, input_size, output_partition_sizes, params_dtype)
            return
        rows = sum(output_partition_sizes)
        for name, role in self.scheme.tensor_names.items():
            dtype, cols = self.params[role]
            shape = (rows,) if cols is None else (rows, cols(input_size))
            param = nn.Parameter(torch.empty(shape, dtype=dtype), False)
            param.weight_loader = self.weight_loader
            param.quant_role = role
            layer.register_parameter(name, param)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard: int = 0) -> None:
        offset, size = sum(self.shard_sizes[:shard]), self.shard_sizes[shard]
        target = param.data.narrow(0, offset, size)
        if param.dim() == 1:  # one float per row: the checkpoint has one per row or per tensor
            value = loaded.float().reshape(-1)
            if value.numel() not in (1, size):
                raise ValueError(f"scale of shape {tuple(loaded.shape)} for {size} rows")
            if param.quant_role == "weight_global_scale" and self.scheme.inverse_global_scale:
                value = 1.0 / value
            target.copy_(value.expand(size))
            return
        if loaded.dtype != param.dtype:
            raise ValueError(f"dtype {loaded.dtype} where {param.dtype} expected")
        if target.shape != loaded.shape:
            raise ValueError(f"shape {tuple(loaded.shape)} where {tuple(target.shape)} expected")
        target.copy_(loaded)

    def process_weights_after_loading(self, layer: nn.Module) -> None:
        if not self.scheme.prequantized:
            tensors = self.quantize(layer.weight.data)
            del layer.weight
        else:
            tensors = {}
            for name, role in self.scheme.tensor_names.items():
                tensors[role] = getattr(layer, name).data
                delattr(layer, name)
        for role, tensor in tensors.items():
            layer.register_parameter(role, nn.Parameter(tensor.contiguous(), False))

    def quantize(self, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class Fp8LinearMethod(QuantLinearMethod):
    """W8A8: e4m3 weights with a scale per output row, activations per token."""

    params = _FP8_PARAMS

    def quantize(self, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        wq, scale = quantize_rows(weight)
        return {"weight": wq, "weight_scale": scale.view(-1)}

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return fp8_linear(x, layer.weight, layer.weight_scale, bias)


class Fp4LinearMethod(QuantLinearMethod):
    """W4A16: NVFP4 weights, activations in the model dtype."""

    params = _FP4_PARAMS

    def quantize(self, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each packed part (q, k, v; gate, up) gets its own global scale, as the
        checkpoints quantized offline have."""
        parts = [quantize_nvfp4(part) for part in weight.split(self.shard_sizes)]
        return {
            "weight_packed": torch.cat([p[0] for p in parts]),
            "weight_scale": torch.cat([p[1] for p in parts]),
            "weight_global_scale": torch.cat(
                [g.expand(size) for (_, _, g), size in zip(parts, self.shard_sizes, strict=True)]
            ),
        }

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return fp4_linear(
            x, layer.weight_packed, layer.weight_scale, layer.weight_global_scale, bias
        )


METHOD_CLASSES: dict[str, type[QuantLinearMethod]] = {
    "fp8": Fp8LinearMethod,
    "fp4": Fp4LinearMethod,
}
