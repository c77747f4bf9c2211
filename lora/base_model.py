"""What an adapter is checked against: the shapes of a base model's adaptable linear layers.

The engine packs checkpoint matrices into one matmul (q/k/v -> `qkv_proj`, gate/up ->
`gate_up_proj`); an adapter names the checkpoint modules (`q_proj`, `up_proj`, ...). A
`LinearShape` is one of the engine's layers with its parts in packing order, so both
views meet here. The same layers repeat in every decoder layer. Torch-free: the operator
builds this from a config.json (`from_hf_config`), the engine from its ModelConfig
(`decoder`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infleet.lora.errors import AdapterError


@dataclass(frozen=True, slots=True)
class LinearShape:
    name: str  # the engine's layer name: "qkv_proj", "o_proj", "gate_up_proj", "down_proj"
    in_features: int
    parts: tuple[tuple[str, int], ...]  # (checkpoint module name, out_features), packing order

    @property
    def out_features(self) -> int:
        return sum(size for _, size in self.parts)

    @property
    def part_offsets(self) -> tuple[int, ...]:
        """Where each part's rows start in the packed output."""
        offsets, at = [], 0
        for _, size in self.parts:
            offsets.append(at)
            at += size
        return tuple(offsets)


@dataclass(frozen=True, slots=True)
class BaseModelShape:
    hidden_size: int
    num_layers: int
    linears: tuple[LinearShape, ...]  # the same in every decoder layer

    def linear(self, name: str) -> LinearShape:
        return next(linear for linear in self.linears if linear.name == name)

    def module(self, name: str) -> tuple[LinearShape, int]:
        """The packed layer holding checkpoint module `name`, and the part's index in it."""
        for linear in self.linears:
            for index, (part, _) in enumerate(linear.parts):
                if part == name:
                    return linear, index
        raise KeyError(name)

    @property
    def module_names(self) -> tuple[str, ...]:
        return tuple(part for linear in self.linears for part, _ in linear.parts)

    @classmethod
    def decoder(
        cls,
        *,
        hidden_size: int,
        num_layers: int,
        q_size: int,
        kv_size: int,
        intermediate_size: int | None,
    ) -> BaseModelShape:
        """The Llama-family decoder layer (Llama, Mistral, Qwen2, Qwen3): packed q/k/v and
        o_proj; packed gate/up and down_proj unless `intermediate_size` is None (MoE blocks,
        whose experts take no adapters here)."""
        linears = [
            LinearShape(
                "qkv_proj",
                hidden_size,
                (("q_proj", q_size), ("k_proj", kv_size), ("v_proj", kv_size)),
            ),
            LinearShape("o_proj", q_size, (("o_proj", hidden_size),)),
        ]
        if intermediate_size is not None:
            linears += [
                LinearShape(
                    "gate_up_proj",
                    hidden_size,
                    (("gate_proj", intermediate_size), ("up_proj", intermediate_size)),
                ),
                LinearShape("down_proj", intermediate_size, (("down_proj", hidden_size),)),
            ]
        return cls(hidden_size, num_layers, tuple(linears))

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any]) -> BaseModelShape:
        """From a transformers config.json dict (what the operator has without torch)."""
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            kv_heads = int(config.get("num_key_value_heads") or heads)
            head_dim = int(config.get("head_dim") or hidden // heads)
            layers = int(config["num_hidden_layers"])
            moe = bool(config.get("num_local_experts") or config.get("num_experts"))
            intermediate = None if moe else int(config["intermediate_size"])
        except (KeyError, TypeError, ValueError) as err:
            raise AdapterError(
                "config.json", f"base model config.json: bad or missing {err}"
            ) from err
        return cls.decoder(
            hidden_size=hidden,
            num_layers=layers,
            q_size=heads * head_dim,
            kv_size=kv_heads * head_dim,
            intermediate_size=intermediate,
        )
