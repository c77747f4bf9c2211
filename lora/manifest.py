"""An adapter's tensors checked against the base model: which layer, module and rank each
A/B pair is, with its scaling.

The base model is recognised by shapes, never by `base_model_name_or_path` (which differs
between hubs and mirrors): every tensor must sit in an existing layer, on a module the
base has, with `in_features` / `out_features` equal to the base's. Torch-free: it works on
names and shapes (from a safetensors header, or from tensors the engine loaded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from infleet.lora.adapter_config import AdapterConfig
from infleet.lora.base_model import BaseModelShape
from infleet.lora.errors import AdapterError
from infleet.lora.safetensors_header import TensorInfo

FLOAT_DTYPES = ("F32", "F16", "BF16")
# "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"; PEFT may keep the
# adapter's name before ".weight" ("lora_A.default.weight").
_LAYER_TENSOR = re.compile(
    r"^(?:base_model\.model\.)?(?P<path>(?:.*\.)?layers\.(?P<layer>\d+)\.(?:.*\.)?(?P<module>[^.]+))"
    r"\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$"
)
_ANY_LORA_TENSOR = re.compile(r"(?:^|\.)(?P<module>[^.]+)\.lora_(?:embedding_)?[AB]\b")


@dataclass(frozen=True, slots=True)
class ModuleLoRA:
    """One adapted checkpoint module in one layer."""

    layer: int
    linear: str  # the engine's packed layer ("qkv_proj")
    part: int  # index of the module among that layer's parts
    rank: int
    scaling: float
    a_name: str  # tensor names in the adapter file
    b_name: str


@dataclass(frozen=True, slots=True)
class AdapterManifest:
    config: AdapterConfig
    modules: tuple[ModuleLoRA, ...]

    @property
    def max_rank(self) -> int:
        return max(m.rank for m in self.modules)


def check_tensors(
    config: AdapterConfig,
    tensors: Mapping[str, TensorInfo],
    base: BaseModelShape,
    max_rank: int,
) -> AdapterManifest:
    """Raises AdapterError naming the first tensor or field that does not fit `base`."""
    _check_target_list(config, base)
    pairs: dict[str, dict[str, str]] = {}
    for name, info in tensors.items():
        match = _LAYER_TENSOR.match(name)
        if match is None:
            _refuse_unplaceable(name, base)
        if info.dtype not in FLOAT_DTYPES:
            raise AdapterError(name, f"tensor {name!r} has dtype {info.dtype}, not a float type")
        if len(info.shape) != 2:
            raise AdapterError(name, f"tensor {name!r} has shape {info.shape}, not a matrix")
        pair = pairs.setdefault(match["path"], {})
        if match["ab"] in pair:
            raise AdapterError(name, f"tensors {pair[match['ab']]!r} and {name!r} are the same")
        pair[match["ab"]] = name
    if not pairs:
        raise AdapterError("adapter_model", "the adapter holds no LoRA tensors")
    modules = [_module(path, pair, config, tensors, base, max_rank) for path, pair in pairs.items()]
    modules.sort(key=lambda m: (m.layer, m.linear, m.part))
    return AdapterManifest(config, tuple(modules))


def _module(
    path: str,
    pair: dict[str, str],
    config: AdapterConfig,
    tensors: Mapping[str, TensorInfo],
    base: BaseModelShape,
    max_rank: int,
) -> ModuleLoRA:
    for ab, other in (("A", "B"), ("B", "A")):
        if ab not in pair:
            raise AdapterError(pair[other], f"tensor {pair[other]!r} has no matching lora_{ab}")
    match = _LAYER_TENSOR.match(pair["A"])
    assert match is not None  # every name in `pairs` matched
    layer, module = int(match["layer"]), match["module"]
    _check_module(pair["A"], module, base)
    if layer >= base.num_layers:
        raise AdapterError(
            pair["A"], f"{path} is in layer {layer}; the base model has {base.num_layers} layers"
        )
    linear, part = base.module(module)
    rank = tensors[pair["A"]].shape[0]
    if rank > max_rank:
        raise AdapterError("r", f"adapter rank {rank} ({path}) exceeds --max-lora-rank {max_rank}")
    out_features = linear.parts[part][1]
    for ab, expected in (("A", (rank, linear.in_features)), ("B", (out_features, rank))):
        shape = tensors[pair[ab]].shape
        if shape != expected:
            raise AdapterError(
                pair[ab],
                f"tensor {pair[ab]!r} has shape {shape}; the base model's {module} "
                f"needs {expected} (in_features={linear.in_features}, "
                f"out_features={out_features}): a different base model?",
            )
    declared, field = config.rank_for(path)
    if declared != rank:
        raise AdapterError(field, f"{path} has rank {rank}; adapter_config.json says {declared}")
    return ModuleLoRA(
        layer, linear.name, part, rank, config.scaling(path, rank), pair["A"], pair["B"]
    )


def _check_module(where: str, module: str, base: BaseModelShape) -> None:
    if module not in base.module_names:
        raise AdapterError(
            where,
            f"target module {module!r} is absent from the base model "
            f"(its adaptable modules: {', '.join(base.module_names)})",
        )


def _check_target_list(config: AdapterConfig, base: BaseModelShape) -> None:
    """A listed target names a module by its last components, as PEFT matches it."""
    if isinstance(config.target_modules, tuple):
        for target in config.target_modules:
            _check_module("target_modules", target.rsplit(".", 1)[-1], base)


def _refuse_unplaceable(name: str, base: BaseModelShape) -> None:
    other = _ANY_LORA_TENSOR.search(name)
    if other is not None:
        _check_module(name, other["module"], base)  # lm_head, embed_tokens: named as such
    raise AdapterError(
        name,
        f"tensor {name!r} is not a LoRA A/B matrix of a decoder layer's linear module "
        f"({', '.join(base.module_names)})",
    )
