"""Filling a CausalLM from (checkpoint name, tensor) pairs in transformers naming.

Every loader (safetensors, GGUF) translates into these names, so one function checks that
each parameter is filled exactly once and names what is missing or unexpected. An MoE
layer's per-expert matrices land in the stacked `experts.w13` / `experts.w2` (see
engine/layers/fused_moe.py); Mixtral's names (`block_sparse_moe`, w1/w3/w2) map onto
the Qwen-MoE ones. transformers 5 holds (and may save) each layer's experts already
stacked, `experts.gate_up_proj [E, 2I, H]` and `experts.down_proj [E, H, I]`: our layout,
loaded whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

from infleet.engine.layers.fused_moe import ALL_EXPERTS, GATE, UP, expert_shard
from infleet.engine.layers.linear import Linear
from infleet.engine.model_config import ModelConfig, ModelLoadError
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
_EXPERT = re.compile(
    r"(?P<layer>.+)\.(?:mlp|block_sparse_moe)\.experts\.(?P<expert>\d+)\."
    r"(?P<matrix>w1|w3|w2|gate_proj|up_proj|down_proj)\.weight"
)
_STACKED = re.compile(r"(?P<layer>.+)\.mlp\.experts\.(?P<matrix>gate_up_proj|down_proj)")
_EXPERT_PART = {"w1": GATE, "gate_proj": GATE, "w3": UP, "up_proj": UP}  # else down (w2)
_MIXTRAL_NAMES = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}


def _target(name: str) -> tuple[str, int]:
    expert = _EXPERT.fullmatch(name)
    if expert:
        number, matrix = int(expert["expert"]), expert["matrix"]
        if matrix in _EXPERT_PART:
            return f"{expert['layer']}.mlp.experts.w13", expert_shard(number, _EXPERT_PART[matrix])
        return f"{expert['layer']}.mlp.experts.w2", number
    stacked = _STACKED.fullmatch(name)
    if stacked:
        param = "w13" if stacked["matrix"] == "gate_up_proj" else "w2"
        return f"{stacked['layer']}.mlp.experts.{param}", ALL_EXPERTS
    name = name.replace(".block_sparse_moe.", ".mlp.")
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in _PACKED:
            packed, shard = _PACKED[part]
            return ".".join([*parts[:i], packed, *parts[i + 1 :]]), shard
    return name, 0


def _checkpoint_name(target: str, shard: int, architecture: str) -> str:
    layer, _, param = target.rpartition(".experts.")
    if param in ("w13", "w2"):
        expert, part = divmod(shard, 2) if param == "w13" else (shard, 2)
        matrix = ("gate_proj", "up_proj", "down_proj")[part]
        if architecture == "mixtral":
            layer = layer.replace(".mlp", ".block_sparse_moe")
            matrix = _MIXTRAL_NAMES[matrix]
        return f"{layer}.experts.{expert}.{matrix}.weight"
    parts = target.split(".")
    for i, part in enumerate(parts):
        if (part, shard) in _UNPACKED:
            parts[i] = _UNPACKED[(part, shard)]
    return ".".join(parts)


def _expected(model: nn.Module) -> set[tuple[str, int]]:
    expected = set()
    for name, param in model.named_parameters():
        owner = getattr(param, "weight_loader", None)
        shards = getattr(param, "num_shards", None)
        if shards is None:
            shards = len(owner.__self__.shard_sizes) if owner is not None else 1
        expected.update((name, shard) for shard in range(shards))
    return expected


def load_weights(model: CausalLM, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
    params = dict(model.named_parameters())
    loaded: set[tuple[str, int]] = set()
    for name, tensor in weights:
        if name.endswith(_IGNORED_SUFFIXES):
            continue
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue  # tied embeddings: some checkpoints still save the copy
        if not model.holds(name):
            continue  # another pipeline stage's weight
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
            hint = _router_hint(model.config, target)
            raise ModelLoadError(f"checkpoint weight {name!r}: {err}{hint}") from err
        if shard == ALL_EXPERTS:
            loaded.update((target, s) for s in range(param.num_shards))
        else:
            loaded.add((target, shard))
    _check_expert_counts(model.config, loaded)
    arch = model.config.architecture
    missing = sorted(_checkpoint_name(t, s, arch) for t, s in _expected(model) - loaded)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelLoadError(f"checkpoint is missing weights: {', '.join(missing[:5])}{more}")
    for module in model.modules():
        if isinstance(module, Linear):
            module.process_weights_after_loading()


def _router_hint(config: ModelConfig, target: str) -> str:
    if config.moe is None or not target.endswith(".mlp.gate.weight"):
        return ""
    return (
        f" (the router's rows are experts: config.json says num_experts={config.moe.num_experts})"
    )


def _check_expert_counts(config: ModelConfig, loaded: set[tuple[str, int]]) -> None:
    """A checkpoint with fewer experts than its config: say so with both numbers, rather
    than list every missing matrix."""
    if config.moe is None:
        return
    found: dict[str, set[int]] = {}
    for target, shard in loaded:
        if target.endswith(".mlp.experts.w2"):
            found.setdefault(target.removesuffix(".mlp.experts.w2"), set()).add(shard)
    for layer, experts in sorted(found.items()):
        if len(experts) != config.moe.num_experts:
            raise ModelLoadError(
                f"checkpoint has {len(experts)} experts in {layer} where config.json says "
                f"num_experts={config.moe.num_experts}"
            )
