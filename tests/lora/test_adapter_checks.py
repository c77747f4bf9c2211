"""Bad adapters are refused with a message naming the field; good ones load identically
from safetensors (torch-free check and torch load) and from .bin.

Every adapter here is written by peft itself (or is a peft adapter damaged afterwards,
the way files break in practice).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from infleet.lora.adapter_dir import inspect_adapter
from infleet.lora.base_model import BaseModelShape
from infleet.lora.errors import AdapterError
from infleet.lora.host_weights import load_adapter
from tests.lora.peft_adapters import ATTENTION, AdapterSpec, peft_model, save_adapters, tiny_model

MAX_RANK = 16


@pytest.fixture(scope="module")
def base():
    return tiny_model("llama")


@pytest.fixture(scope="module")
def shape(base):
    return BaseModelShape.from_hf_config(base.config.to_dict())


def save_peft(base, root: Path, config, name: str = "adapter") -> Path:
    import peft

    torch.manual_seed(0)
    model = peft.get_peft_model(base, config, adapter_name=name)
    model.save_pretrained(root / "save")
    out = (root / "save" / name).rename(root / name)
    model.unload()  # give the shared base model its plain modules back
    return out


def save_spec(base, root: Path, spec: AdapterSpec, **save_kwargs) -> Path:
    model = peft_model(base, (spec,))
    out = save_adapters(model, (spec,), root)[spec.name]
    if save_kwargs:
        model.save_pretrained(root / "again", selected_adapters=[spec.name], **save_kwargs)
        out = (root / "again" / spec.name).rename(root / f"{spec.name}-again")
    model.unload()
    return out


def refused(path: Path, shape: BaseModelShape, torch_too: bool = True) -> list[AdapterError]:
    """The torch-free check and the torch loader both refuse, with the same error."""
    errors = []
    with pytest.raises(AdapterError) as caught:
        inspect_adapter(path, shape, MAX_RANK)
    errors.append(caught.value)
    if torch_too:
        with pytest.raises(AdapterError) as caught:
            load_adapter(path, shape, MAX_RANK, torch.float32)
        errors.append(caught.value)
        assert str(errors[0]) == str(errors[1])
    return errors


def test_good_adapter_same_from_safetensors_and_bin(base, shape, tmp_path):
    spec = AdapterSpec("good", 8, 16, ATTENTION, rslora=True)
    path = save_spec(base, tmp_path, spec)
    manifest = inspect_adapter(path, shape, MAX_RANK)
    assert manifest.max_rank == 8 and len(manifest.modules) == 2 * 4
    assert {m.scaling for m in manifest.modules} == {16 / 8**0.5}
    from_st = load_adapter(path, shape, MAX_RANK, torch.float32)
    bin_path = save_spec(base, tmp_path / "bin", spec, safe_serialization=False)
    assert (bin_path / "adapter_model.bin").is_file()
    from_bin = load_adapter(bin_path, shape, MAX_RANK, torch.float32)
    assert from_st.weights.keys() == from_bin.weights.keys()
    for key, parts in from_st.weights.items():
        for ours, theirs in zip(parts, from_bin.weights[key], strict=True):
            assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    with pytest.raises(AdapterError, match="only be checked with torch"):
        inspect_adapter(bin_path, shape, MAX_RANK)


def test_rank_too_large(base, shape, tmp_path):
    path = save_spec(base, tmp_path, AdapterSpec("big", 32, 32, ("q_proj",)))
    (error, _) = refused(path, shape)
    assert error.field == "r"
    assert "adapter rank 32" in str(error) and "--max-lora-rank 16" in str(error)


def test_target_module_absent_from_base(base, shape, tmp_path):
    import peft

    path = save_peft(base, tmp_path, peft.LoraConfig(r=4, target_modules=["q_proj", "lm_head"]))
    error = refused(path, shape)[0]
    assert "target module 'lm_head' is absent from the base model" in str(error)
    # A listed target that no module of this base has (a GPT-2 adapter's c_attn).
    config = json.loads((path / "adapter_config.json").read_text())
    config["target_modules"] = ["c_attn"]
    (path / "adapter_config.json").write_text(json.dumps(config))
    error = refused(path, shape)[0]
    assert error.field == "target_modules" and "'c_attn' is absent" in str(error)


def test_shape_mismatch_names_tensor_and_shapes(base, shape, tmp_path):
    """An adapter trained on another base: wider hidden size, or more layers."""
    wider = tiny_model("llama", hidden_size=96)
    spec = AdapterSpec("wide", 4, 8, ("v_proj",))
    error = refused(save_spec(wider, tmp_path / "w", spec), shape)[0]
    assert "has shape (4, 96)" in str(error) and "needs (4, 64)" in str(error)
    assert "a different base model?" in str(error) and error.field.endswith("lora_A.weight")
    deeper = tiny_model("llama", num_hidden_layers=3)
    error = refused(save_spec(deeper, tmp_path / "d", spec), shape)[0]
    assert "layers.2.self_attn.v_proj is in layer 2; the base model has 2 layers" in str(error)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda raw: raw[: len(raw) - 7], "lies outside the file (truncated?)"),
        (lambda raw: raw[:5], "is not a safetensors file"),
        (lambda raw: (10**9).to_bytes(8, "little") + raw[8:], "header length 1000000000 exceeds"),
        (lambda raw: raw[:8] + b"{" * 8 + raw[16:], "header is not valid JSON"),
        (lambda raw: raw.replace(b'"F32"', b'"X99"', 1), "has a malformed entry"),
        (lambda raw: raw.replace(b'"data_offsets":[0,', b'"data_offsets":[4,', 1), "size does"),
    ],
)
def test_corrupt_safetensors(base, shape, tmp_path, damage, message):
    path = save_spec(base, tmp_path, AdapterSpec("c", 4, 8, ("q_proj",)))
    weights = path / "adapter_model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    for error in refused(path, shape):
        assert error.field == "adapter_model.safetensors" and message in str(error)


def test_overlapping_tensors_refused(base, shape, tmp_path):
    path = save_spec(base, tmp_path, AdapterSpec("o", 4, 8, ("q_proj",)))
    weights = path / "adapter_model.safetensors"
    raw = weights.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    names = sorted(n for n in header if n != "__metadata__")
    header[names[1]]["data_offsets"] = header[names[0]]["data_offsets"]  # two A's, same bytes
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= length
    text = text.ljust(length)
    weights.write_bytes(raw[:8] + text + raw[8 + length :])
    assert "overlap" in str(refused(path, shape)[0])


def test_nan_in_weights_refused_at_load(base, shape, tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_spec(base, tmp_path, AdapterSpec("n", 4, 8, ("q_proj",)))
    tensors = load_file(path / "adapter_model.safetensors")
    name = sorted(tensors)[0]
    tensors[name][0, 0] = float("nan")
    save_file(tensors, path / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="holds NaN or infinite values") as caught:
        load_adapter(path, shape, MAX_RANK, torch.float32)
    assert caught.value.field == name


@pytest.mark.parametrize(
    "config,field,message",
    [
        ("dora", "use_dora", "DoRA (weight-decomposed LoRA) is not supported"),
        ("modules_to_save", "modules_to_save", "full copies of base modules"),
        ("loha", "peft_type", "peft_type 'LOHA' is not supported (only 'LORA')"),
        ("bias", "bias", "bias 'all' is not supported"),
    ],
)
def test_unsupported_peft_features(base, shape, tmp_path, config, field, message):
    import peft

    configs = {
        "dora": lambda: peft.LoraConfig(r=4, target_modules=["q_proj"], use_dora=True),
        "modules_to_save": lambda: peft.LoraConfig(
            r=4, target_modules=["q_proj"], modules_to_save=["lm_head"]
        ),
        "loha": lambda: peft.LoHaConfig(r=4, target_modules=["q_proj"]),
        "bias": lambda: peft.LoraConfig(r=4, target_modules=["q_proj"], bias="all"),
    }
    path = save_peft(base, tmp_path, configs[config]())
    for error in refused(path, shape):
        assert error.field == field and message in str(error)


def test_missing_or_unreadable_files(base, shape, tmp_path):
    path = save_spec(base, tmp_path, AdapterSpec("m", 4, 8, ("q_proj",)))
    (path / "adapter_config.json").write_text("{not json")
    assert "adapter_config.json is not valid JSON" in str(refused(path, shape)[0])
    (path / "adapter_config.json").unlink()
    assert refused(path, shape)[0].field == "adapter_config.json"
    shutil.rmtree(path)
    assert "does not exist" in str(refused(path, shape)[0])
