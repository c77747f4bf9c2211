"""The mixture-of-experts part of a model's shape, read from an HF `config.json` dict.

Mixtral, Qwen2-MoE and Qwen3-MoE name the same few facts differently; they become one
`MoEConfig` so the decoder never branches on an architecture name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class MoEConfigError(ValueError):
    """A config.json whose MoE fields cannot describe a model (engine ModelLoadError's base)."""


@dataclass(slots=True, frozen=True)
class MoEConfig:
    num_experts: int
    top_k: int
    intermediate_size: int  # of one routed expert
    # Renormalise the top-k router probabilities to sum to 1 (Mixtral always does).
    norm_topk_prob: bool
    # Per layer: True where the MLP is the sparse block, False where it is a dense MLP.
    sparse_layers: tuple[bool, ...]
    # One always-on expert gated by sigmoid(x @ w) (Qwen2-MoE); 0 = none.
    shared_intermediate_size: int = 0

    def __post_init__(self) -> None:
        if self.num_experts < 1:
            raise MoEConfigError(f"num_experts={self.num_experts}: an MoE needs at least 1 expert")
        if not 1 <= self.top_k <= self.num_experts:
            raise MoEConfigError(
                f"num_experts_per_tok={self.top_k} must be between 1 and "
                f"num_experts={self.num_experts}"
            )


# architecture -> the config.json key that holds its expert count
_EXPERT_COUNT_KEYS = {
    "mixtral": ("num_local_experts",),
    # transformers 5 saves Qwen3-MoE's count as num_local_experts; released checkpoints say num_experts.
    "qwen2_moe": ("num_experts", "num_local_experts"),
    "qwen3_moe": ("num_experts", "num_local_experts"),
}
MOE_ARCHITECTURES = tuple(_EXPERT_COUNT_KEYS)


def _int(cfg: dict[str, Any], *keys: str) -> int:
    for key in keys:
        if cfg.get(key) is not None:
            return int(cfg[key])
    raise MoEConfigError(f"config.json has no {' or '.join(repr(k) for k in keys)}")


def sparse_layer_pattern(num_layers: int, step: int, dense_layers: list[int]) -> tuple[bool, ...]:
    """transformers' rule: layer i is sparse unless listed in mlp_only_layers, and only
    every `decoder_sparse_step`-th layer (1-based) is."""
    if step < 1:
        raise MoEConfigError(f"decoder_sparse_step={step} must be at least 1")
    bad = [i for i in dense_layers if not 0 <= i < num_layers]
    if bad:
        raise MoEConfigError(f"mlp_only_layers {bad} are outside the {num_layers} layers")
    return tuple(i not in dense_layers and (i + 1) % step == 0 for i in range(num_layers))


def moe_from_hf(cfg: dict[str, Any], arch: str, num_layers: int) -> MoEConfig | None:
    """None for a dense architecture."""
    if arch not in _EXPERT_COUNT_KEYS:
        return None
    experts = _int(cfg, *_EXPERT_COUNT_KEYS[arch])
    top_k = _int(cfg, "num_experts_per_tok")
    if arch == "mixtral":  # every layer sparse, experts as wide as intermediate_size
        return MoEConfig(
            num_experts=experts,
            top_k=top_k,
            intermediate_size=_int(cfg, "intermediate_size"),
            norm_topk_prob=True,
            sparse_layers=(True,) * num_layers,
        )
    pattern = sparse_layer_pattern(
        num_layers, int(cfg.get("decoder_sparse_step") or 1), list(cfg.get("mlp_only_layers") or [])
    )
    return MoEConfig(
        num_experts=experts,
        top_k=top_k,
        intermediate_size=_int(cfg, "moe_intermediate_size"),
        norm_topk_prob=bool(cfg.get("norm_topk_prob", False)),
        sparse_layers=pattern,
        shared_intermediate_size=int(cfg.get("shared_expert_intermediate_size") or 0)
        if arch == "qwen2_moe"
        else 0,
    )
