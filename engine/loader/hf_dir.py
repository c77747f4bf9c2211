"""Loading a transformers-style directory: config.json, safetensors (single or sharded),
tokenizer.json + tokenizer_config.json, generation_config.json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from infleet.engine.model_config import ModelConfig, ModelLoadError, config_from_hf
from infleet.engine.tokenizer import Tokenizer


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path} is not valid JSON: {err}") from err


def read_config(path: Path) -> ModelConfig:
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json")
    return config_from_hf(_read_json(path / "config.json"))


def read_quantization_config(path: Path) -> dict[str, Any] | None:
    """config.json's `quantization_config`, or ModelOpt's hf_quant_config.json; None if the
    checkpoint is not quantized."""
    found = _read_json(path / "config.json").get("quantization_config")
    if found is None and (path / "hf_quant_config.json").is_file():
        found = {"quant_method": "modelopt", **_read_json(path / "hf_quant_config.json")}
    return found


def weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise ModelLoadError(f"{path} is missing weight shards: {', '.join(missing)}")
        return [path / n for n in names]
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"]
    found = sorted(path.glob("*.safetensors"))
    if not found:
        raise ModelLoadError(
            f"{path} has no *.safetensors weights (pytorch_model.bin is not supported)"
        )
    return found


def iter_weights(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                yield name, f.get_tensor(name)


def _ids(value: Any) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, list) else {int(value)}


def read_tokenizer(path: Path) -> Tokenizer:
    # generation_config.json lists every id that ends a turn (e.g. Llama-3's <|eot_id|>).
    eos = _ids(_read_json(path / "generation_config.json").get("eos_token_id"))
    eos |= _ids(_read_json(path / "config.json").get("eos_token_id"))
    return Tokenizer.from_hf_dir(path, eos)
