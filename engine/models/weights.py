"""Filling a CausalLM from (checkpoint name, tensor) pairs in transformers naming.

Every loader (safetensors, GGUF) translates into these names, so one function checks that
each parameter is filled exactly once and names what is missing or unexpected.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from infleet.engine.layers.linear import Linear
from infleet.engine.model_config import ModelLoadError
from infleet.engine.models.decoder import CausalLM

# checkpoint module -> (our packed module, shard index)
_PACKED = {
    "q_proj": ("qkv_proj", 0),
    "k_proj": ("qkv_proj", 1),
    "v_proj": ("qkv_proj", 2),
    "gate_proj": ("gate_up_proj", 0),
    "up_proj": ("gate_up_proj", 1),
}
_UNPACKED = {packed: name for name, packed in _PACKED.items()}
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # older checkpoints save this derived buffer


def _target(name: str) -> tuple[str, int]:
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in _PACKED:
            packed, shard = _PACKED[part]
            return ".".join([*parts[:i], packed, *parts[i + 1 :]]), shard
    return name, 0


def _checkpoint_name(target: str, shard: int) -> str:
    parts = target.split(".")
    for i, part in enumerate(parts):
        if (part, shard) in _UNPACKED:
            parts[i] = _UNPACKED[(part, shard)]
    return ".".join(parts)


def _expected(model: nn.Module) -> set[tuple[str, int]]:
    expected = set()
    for name, param in model.named_parameters():
        owner = getattr(param, "weight_loader", None)
        shards = len(owner.__self__.shard_sizes) if owner is not None else 1
        expected.update((name, shard) for shard in range(shards))
    return expected


def load_weights(model: CausalLM, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
    params = dict(model.named_parameters())
    loaded: set[tuple[str, int]] = set()
    for name, tensor in weights:
        if name.endswith(_IGNORED_SUFFIXES):
            continue
        if name == "lm_head.weight" and model.lm_head is None:
            continue  # tied embeddings: some checkpoints still save the copy
        target, shard = _target(name)
        param = params.get(target)
        if param is None:
            raise ModelLoadError(
                f"checkpoint weight {name!r} has no place in a {model.config.architecture} model"
            )
        try:
            loader = getattr(param, "weight_loader", None)
            if loader is not None:
                loader(param, tensor, shard)
            elif param.shape != tensor.shape:
                raise ValueError(f"shape {tuple(tensor.shape)} where {tuple(param.shape)} expected")
            else:
                param.data.copy_(tensor)
        except ValueError as err:
            raise ModelLoadError(f"checkpoint weight {name!r}: {err}") from err
        loaded.add((target, shard))
    missing = sorted(_checkpoint_name(t, s) for t, s in _expected(model) - loaded)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelLoadError(f"checkpoint is missing weights: {', '.join(missing[:5])}{more}")
    for module in model.modules():
        if isinstance(module, Linear):
            module.process_weights_after_loading()
