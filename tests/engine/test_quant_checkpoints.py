"""Quantized weights in the engine: checkpoints written by the compressed-tensors library
(and rewritten in ModelOpt's layout) load and compute what the library's own
dequantization computes; `--quantization fp8|fp4` quantizes a float checkpoint at load;
unsupported schemes and conflicting flags are refused by name."""

from __future__ import annotations

import json

import pytest
import torch

from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import load_model
from infleet.engine.quantization.apply import weight_bytes
from infleet.engine.quantization.checkpoint import (
    UnsupportedQuantization,
    resolve_scheme,
    scheme_from_config,
)
from infleet.engine.quantization.fp4 import dequantize_nvfp4
from infleet.engine.quantization.fp8 import quantize_rows
from infleet.engine.quantization.methods import QuantLinearMethod
from tests.engine.kernel_cases import relative_error
from tests.engine.quant_checkpoints import quantize_with_library, rewrite_as_modelopt
from tests.engine.tiny_models import PROMPTS, build_checkpoint

pytest.importorskip("compressed_tensors")


@pytest.fixture(scope="module")
def float_dir(tmp_path_factory):
    # hidden 64 / intermediate 128: every input dim a multiple of NVFP4's 32.
    return build_checkpoint(tmp_path_factory.mktemp("float") / "ckpt", "llama", seed=3)


def _logits(loaded) -> torch.Tensor:
    prompt = loaded.tokenizer.encode(PROMPTS[2])
    runner = ModelRunner(loaded, num_blocks=8, block_size=16)
    return runner.forward([SeqSlice(prompt, 0, list(range(8)))])[0]


def _quantized(layer) -> bool:
    return isinstance(getattr(layer, "quant_method", None), QuantLinearMethod)


def _dequantized(layer) -> torch.Tensor:
    if hasattr(layer, "weight_packed"):
        return dequantize_nvfp4(layer.weight_packed, layer.weight_scale, layer.weight_global_scale)
    return layer.weight.float() * layer.weight_scale.view(-1, 1)


def _fake_quantize_activations(module, args):
    """What W8A8 does to a linear layer's input, in float: per-token e4m3 and back."""
    x = args[0]
    xq, scale = quantize_rows(x.reshape(-1, x.shape[-1]))
    return ((xq.float() * scale).view(x.shape),)


def _float_twin(quantized, float_path):
    """The float model whose linear weights are `quantized`'s dequantized ones (and whose
    inputs are rounded as FP8's per-token quantization rounds them): the CPU reference of
    what the quantized model computes."""
    twin = load_model(str(float_path), device="cpu", quantization="none")
    layers = dict(quantized.model.named_modules())
    for name, layer in twin.model.named_modules():
        if _quantized(layers.get(name)):
            layer.weight.data.copy_(_dequantized(layers[name]))
            if quantized.quantization.method == "fp8":
                layer.register_forward_pre_hook(_fake_quantize_activations)
    return twin


PRESETS = {"FP8_DYNAMIC": "fp8", "NVFP4A16": "fp4", "NVFP4": "fp4"}  # NVFP4: W4A4, run W4A16


@pytest.mark.parametrize("preset", list(PRESETS))
def test_compressed_tensors_checkpoint_matches_the_librarys_dequantization(
    preset, float_dir, tmp_path
):
    path = quantize_with_library(float_dir, tmp_path / preset, preset)
    loaded = load_model(str(path), device="cpu")
    assert loaded.quantization.method == PRESETS[preset] and loaded.quantization.prequantized
    reference = load_model(str(path / "dequantized"), device="cpu")
    # The library dequantizes NVFP4 into bf16: its reference is rounded to 2^-8.
    rtol = 1e-6 if PRESETS[preset] == "fp8" else 2**-8
    layers = dict(loaded.model.named_modules())
    for name, ref in reference.model.named_modules():
        if name.endswith(("qkv_proj", "o_proj", "gate_up_proj", "down_proj")):
            assert _quantized(layers[name]), name
            torch.testing.assert_close(_dequantized(layers[name]), ref.weight, rtol=rtol, atol=1e-9)
    assert not _quantized(loaded.model.lm_head)  # the checkpoint's `ignore`
    # Same numbers up to fp32 summation order (and, for FP8, a rare e4m3 tie flipped by it).
    twin = _float_twin(loaded, path / "dequantized")
    assert relative_error(_logits(loaded), _logits(twin)) < 1e-4


def test_modelopt_nvfp4_layout_loads_as_the_same_weights(float_dir, tmp_path):
    ct = quantize_with_library(float_dir, tmp_path / "ct", "NVFP4A16")
    modelopt = rewrite_as_modelopt(ct, tmp_path / "modelopt")
    loaded = load_model(str(modelopt), device="cpu")
    assert loaded.quantization.source == "modelopt NVFP4"
    same = load_model(str(ct), device="cpu")
    assert torch.equal(
        loaded.model.model.layers[1].mlp.gate_up_proj.weight_packed,
        same.model.model.layers[1].mlp.gate_up_proj.weight_packed,
    )
    assert relative_error(_logits(loaded), _logits(same)) < 1e-6  # 1/(1/g) rounding only


# method -> bound on each layer's weight error (e4m3: 3 mantissa bits; e2m1: 1, in blocks)
ONLINE = {"fp8": 0.04, "fp4": 0.12}


@pytest.mark.parametrize("method", list(ONLINE))
def test_online_quantization_at_load(method, float_dir):
    loaded = load_model(str(float_dir), device="cpu", quantization=method)
    full = load_model(str(float_dir), device="cpu")
    qkv = loaded.model.model.layers[0].self_attn.qkv_proj
    if method == "fp8":
        assert qkv.weight.dtype == torch.float8_e4m3fn
    else:  # q, k and v each keep their own global scale, as offline checkpoints do
        assert qkv.weight_packed.dtype == torch.uint8
        assert len(set(qkv.weight_global_scale.tolist())) == 3
    assert weight_bytes(loaded.model) < weight_bytes(full.model)
    floats = dict(full.model.named_modules())
    for name, layer in loaded.model.named_modules():
        if _quantized(layer):
            assert 0 < relative_error(_dequantized(layer), floats[name].weight) < ONLINE[method]
    twin = _float_twin(loaded, float_dir)
    assert relative_error(_logits(loaded), _logits(twin)) < 1e-4


def _config(preset: str, fmt: str) -> dict:
    from compressed_tensors.quantization import QuantizationConfig, preset_name_to_scheme

    groups = {"group_0": preset_name_to_scheme(preset, ["Linear"])}
    config = QuantizationConfig(config_groups=groups, format=fmt).model_dump(mode="json")
    return {**config, "quant_method": "compressed-tensors", "quantization_status": "compressed"}


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (lambda: _config("W4A16", "pack-quantized"), "'pack-quantized'"),
        (lambda: _config("W8A8", "int-quantized"), "'int-quantized'"),
        (lambda: _config("FP8_BLOCK", "float-quantized"), "strategy 'block'"),
        (lambda: _config("MXFP4", "mxfp4-pack-quantized"), "'mxfp4-pack-quantized'"),
        (lambda: {"quant_method": "gptq", "bits": 4}, "'gptq'"),
        (lambda: {"quant_method": "awq", "bits": 4}, "'awq'"),
        (lambda: {"quant_method": "bitsandbytes"}, "'bitsandbytes'"),
        (lambda: {"quant_method": "modelopt", "quant_algo": "W4A8_AWQ"}, "'W4A8_AWQ'"),
        (
            lambda: {**_config("FP8_DYNAMIC", "float-quantized"), "kv_cache_scheme": {"x": 1}},
            "kv_cache_scheme",
        ),
    ],
)
def test_unsupported_schemes_are_refused_by_name(config, named):
    with pytest.raises(UnsupportedQuantization, match=named) as err:
        scheme_from_config(config())
    assert "supported: compressed-tensors float-quantized" in str(err.value)


def test_flags_against_the_checkpoint(float_dir, tmp_path):
    fp8 = _config("FP8_DYNAMIC", "float-quantized")
    assert resolve_scheme("auto", fp8).method == "fp8"
    assert resolve_scheme("fp8", fp8).prequantized
    assert resolve_scheme("auto", None) is None and resolve_scheme("none", None) is None
    assert resolve_scheme("fp4", None).source == "online"
    with pytest.raises(UnsupportedQuantization, match="already quantized as fp8"):
        resolve_scheme("fp4", fp8)
    with pytest.raises(ValueError, match="--quantization: 'int4'"):
        resolve_scheme("int4", None)
    bad = tmp_path / "gptq"
    bad.mkdir()
    for f in float_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    config = json.loads((bad / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq"}
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedQuantization, match="'gptq'"):
        load_model(str(bad), device="cpu")
