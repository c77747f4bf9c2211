"""Putting a QuantScheme on a built model: which linear layers take a quantized format,
finishing them after loading, and what the weights then occupy."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from infleet.engine.layers.linear import Linear
from infleet.engine.models.weights import _checkpoint_name
from infleet.engine.quantization.checkpoint import QuantScheme, UnsupportedQuantization
from infleet.engine.quantization.methods import METHOD_CLASSES


def attach_methods(model: nn.Module, scheme: QuantScheme) -> None:
    """Every linear layer but the LM head (kept in the model dtype, as vLLM and the
    checkpoints' own `ignore` lists do) and those the checkpoint leaves unquantized."""
    architecture = model.config.architecture
    for name, layer in model.named_modules():
        if not isinstance(layer, Linear) or name == "lm_head":
            continue
        parts = {
            _checkpoint_name(name, shard, architecture) for shard in range(len(layer.shard_sizes))
        }  # q_proj/k_proj/v_proj of a packed qkv_proj
        ignored = {scheme.is_ignored(part) for part in parts}
        if len(ignored) > 1:
            raise UnsupportedQuantization(
                f"checkpoint quantizes some of {', '.join(sorted(parts))} and not the others; "
                "they run as one packed matmul"
            )
        if ignored.pop():
            continue
        if layer.tp_size != 1:
            raise UnsupportedQuantization("quantized weights run with tensor parallelism 1 only")
        device, dtype = layer.weight.device, layer.weight.dtype
        del layer.weight  # the float format's parameter, uninitialised: nothing is lost
        method = METHOD_CLASSES[scheme.method](scheme, layer.shard_sizes)
        with torch.device(device):
            method.create_weights(layer, layer.in_features, layer.shard_sizes, dtype)
        layer.quant_method = method


def finish_loading() -> None:
    """After load_weights (which finished each layer's format)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the float weights' memory goes back to the KV pool's sizing


def used_weights(
    scheme: QuantScheme, weights: Iterable[tuple[str, torch.Tensor]]
) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors without those the engine reads and does not use."""
    return ((n, t) for n, t in weights if not scheme.is_unused(n))


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters (tied ones once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def weights_line(loaded) -> str:
    """The start-up log's weights line: format and bytes, against the model dtype's."""
    scheme = loaded.quantization
    fmt = "unquantized" if scheme is None else f"{scheme.method} ({scheme.source})"
    now, full = weight_bytes(loaded.model), loaded.unquantized_weight_bytes or 0
    line = f"weights: {fmt}, {now / 2**20:.0f} MiB"
    if scheme is not None:
        line += f" ({full / 2**20:.0f} MiB in {str(loaded.dtype).removeprefix('torch.')}, "
        line += f"{(full - now) / 2**20:.0f} MiB freed; on CUDA the KV pool is sized after, so it takes them)"
    return line
