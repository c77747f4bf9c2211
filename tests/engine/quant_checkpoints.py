"""Tiny quantized checkpoints written by the compressed-tensors library (test-only
dependency), and the library's own dequantization of them as the reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file


def _calibrate(model: torch.nn.Module) -> None:
    """Weight scales from the weights (llm-compressor's observers do this; the library
    itself only applies and packs): min/max per channel (FP8) or per 16-block (NVFP4)."""
    from compressed_tensors.quantization.utils.helpers import calculate_qparams, generate_gparam

    for module in model.modules():
        scheme = getattr(module, "quantization_scheme", None)
        if scheme is None:
            continue
        w, args = module.weight.data, scheme.weights
        if args.group_size == 16:  # NVFP4
            global_scale = generate_gparam(w.min(), w.max())
            module.weight_global_scale.data.copy_(global_scale)
            blocks = w.view(w.shape[0], -1, 16)
            scale, _ = calculate_qparams(blocks.amin(-1), blocks.amax(-1), args, global_scale)
        else:
            scale, _ = calculate_qparams(w.amin(-1, keepdim=True), w.amax(-1, keepdim=True), args)
        module.weight_scale.data.copy_(scale.to(module.weight_scale.dtype))


def quantize_with_library(src: Path, dst: Path, preset: str) -> Path:
    """Quantize `src` (a float checkpoint) with compressed-tensors' `preset` into `dst`,
    and write the library's dequantization of it as a float checkpoint in `dst/dequantized`."""
    import transformers
    from compressed_tensors.compressors.model_compressors.model_compressor import (
        ModelCompressor,
    )
    from compressed_tensors.quantization import (
        QuantizationConfig,
        apply_quantization_config,
        preset_name_to_scheme,
    )

    shutil.copytree(src, dst)
    model = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    float_names = set(model.state_dict())
    scheme = preset_name_to_scheme(preset, ["Linear"])
    apply_quantization_config(
        model, QuantizationConfig(config_groups={"group_0": scheme}, ignore=["lm_head"])
    )
    _calibrate(model)
    compressor = ModelCompressor.from_pretrained_model(model)
    compressor.compress_model(model)
    model.save_pretrained(dst)
    compressor.update_config(str(dst))
    compressor.decompress_model(model)
    dequantized = {n: t.contiguous() for n, t in model.state_dict().items() if n in float_names}
    shutil.copytree(src, dst / "dequantized")
    save_file(dequantized, str(dst / "dequantized" / "model.safetensors"))
    return dst


def rewrite_as_modelopt(ct_nvfp4: Path, dst: Path) -> Path:
    """A compressed-tensors NVFP4 checkpoint in ModelOpt's documented layout: the packed
    weight named `weight`, the global scale as its reciprocal `weight_scale_2`, the config
    as `quant_method: modelopt`."""
    from safetensors.torch import load_file

    shutil.copytree(ct_nvfp4, dst)
    tensors = {}
    for name, t in load_file(str(ct_nvfp4 / "model.safetensors")).items():
        if name.endswith(".weight_packed"):
            name = name.removesuffix("_packed")
        elif name.endswith(".weight_global_scale"):
            name, t = name.replace("weight_global_scale", "weight_scale_2"), 1.0 / t
        tensors[name] = t
    save_file(tensors, str(dst / "model.safetensors"))
    config = json.loads((dst / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "modelopt",
        "quant_algo": "NVFP4",
        "group_size": 16,
        "exclude_modules": ["lm_head"],
        "kv_cache_quant_algo": None,
    }
    (dst / "config.json").write_text(json.dumps(config))
    return dst
