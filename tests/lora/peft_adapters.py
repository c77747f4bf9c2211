"""Adapters built by peft on tiny random transformers models (the engine tests' shape),
saved as users have them.

`AdapterSpec`s vary what the batched path must get right: ranks, rsLoRA, attention-only
vs attention + MLP targets, a per-module `rank_pattern` / `alpha_pattern`. All adapters
of one base live in one PeftModel, whose `adapter_names=` mixed-batch forward is the
reference. Weights are random and non-zero (peft's default zero B would prove nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tests.engine.tiny_models import SHAPE  # the engine tests' tiny shape

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = (*ATTENTION, "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    r: int
    alpha: float
    targets: tuple[str, ...]
    rslora: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def lora_config(self):
        import peft

        return peft.LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            use_rslora=self.rslora,
            target_modules=list(self.targets),
            init_lora_weights=False,
            **self.extra,
        )


MIXED = (
    AdapterSpec("attn-r4", 4, 8, ATTENTION),
    AdapterSpec("qv-r8-rslora", 8, 16, ("q_proj", "v_proj"), rslora=True),
    AdapterSpec("all-r2", 2, 4, ALL_LINEAR),
    AdapterSpec(
        "all-r16-rslora-patterns",
        16,
        8,
        ALL_LINEAR,
        rslora=True,
        extra=dict(rank_pattern={"layers.1.mlp.up_proj": 4}, alpha_pattern={"k_proj": 3}),
    ),
)


def tiny_model(arch: str = "llama", seed: int = 0, **overrides: Any):
    import transformers

    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(arch, **{**SHAPE, **overrides})
    return transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def peft_model(base, specs: tuple[AdapterSpec, ...], seed: int = 1):
    """One PeftModel holding every spec as a named adapter, with random A and B."""
    import peft

    torch.manual_seed(seed)
    model = peft.get_peft_model(base, specs[0].lora_config(), adapter_name=specs[0].name)
    for spec in specs[1:]:
        model.add_adapter(spec.name, spec.lora_config())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_" in name:
                param.normal_(0, 0.2)
    return model.eval()


def save_adapters(model, specs: tuple[AdapterSpec, ...], root: Path) -> dict[str, Path]:
    """Each adapter in its own PEFT directory (adapter_config.json + safetensors)."""
    out = {}
    for spec in specs:
        model.save_pretrained(root / "save", selected_adapters=[spec.name])
        saved = root / "save" if spec.name == "default" else root / "save" / spec.name
        out[spec.name] = saved.rename(root / spec.name)
    return out


def peft_module(model, layer: int, module: str):
    """The peft-wrapped linear `module` of decoder layer `layer`."""
    block = model.base_model.model.model.layers[layer]
    parent = block.self_attn if module in ATTENTION else block.mlp
    return getattr(parent, module)
