"""The base-model description agrees with the engine's own layers.

The engine packs q/k/v and gate/up (engine/models); lora describes the same packing for
adapters (lora/base_model.py), built from a config.json on the operator's side and from
ModelConfig on the engine's. This test ties the two, for every architecture the engine
serves: each engine Linear's input size and packed part sizes, in order.
"""

from __future__ import annotations

import pytest
import torch

from infleet.engine.layers.linear import Linear
from infleet.engine.model_config import config_from_hf
from infleet.engine.models import build_model
from infleet.lora.base_model import BaseModelShape
from tests.lora.peft_adapters import tiny_model


@pytest.mark.parametrize(
    "arch,overrides",
    [("llama", {}), ("qwen2", {}), ("qwen3", {"head_dim": 32}), ("mistral", {})],
)
def test_description_matches_engine_linears(arch, overrides):
    hf = tiny_model(arch, **overrides).config.to_dict()
    config = config_from_hf(hf)
    shape = BaseModelShape.from_hf_config(hf)
    from_engine_config = BaseModelShape.decoder(
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        q_size=config.num_heads * config.head_dim,
        kv_size=config.num_kv_heads * config.head_dim,
        intermediate_size=config.intermediate_size,
    )
    assert shape == from_engine_config
    model = build_model(config, torch.device("cpu"), torch.float32)
    layer = model.model.layers[0]
    for linear in shape.linears:
        parent = layer.self_attn if hasattr(layer.self_attn, linear.name) else layer.mlp
        ours: Linear = getattr(parent, linear.name)
        assert ours.weight.shape[1] == linear.in_features
        assert ours.shard_sizes == [size for _, size in linear.parts]
    assert len(model.model.layers) == shape.num_layers
