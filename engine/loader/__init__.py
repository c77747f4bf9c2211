"""`load_model(uri)`: an HF directory, a .gguf file or `builtin:NAME` -> a ready model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from infleet.engine.loader import hf_dir
from infleet.engine.loader.builtin import BUILTINS, DEFAULT_MODEL, resolve_builtin
from infleet.engine.loader.gguf_format import read_gguf
from infleet.engine.loader.gguf_model import iter_gguf_weights, read_gguf_config
from infleet.engine.model_config import ModelConfig, ModelLoadError
from infleet.engine.models import CausalLM, build_model, load_weights
from infleet.engine.quantization.apply import (
    attach_methods,
    finish_loading,
    used_weights,
    weight_bytes,
)
from infleet.engine.quantization.checkpoint import QuantScheme, resolve_scheme
from infleet.engine.tokenizer import Tokenizer
from infleet.engine.tokenizer.from_gguf import tokenizer_from_gguf

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(slots=True)
class LoadedModel:
    model: CausalLM
    config: ModelConfig
    tokenizer: Tokenizer
    served_name: str
    device: torch.device
    dtype: torch.dtype
    quantization: QuantScheme | None = None
    unquantized_weight_bytes: int | None = None  # what the weights take in the model dtype


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":  # bf16 where the hardware is built for it, fp32 on CPU
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _resolve(uri: str) -> tuple[Path, str]:
    """(file or directory, served name) of a model URI."""
    if uri.startswith("builtin:"):
        name = uri.removeprefix("builtin:")
        return resolve_builtin(name), name
    path = Path(uri).expanduser()
    return path, path.stem if path.suffix == ".gguf" else path.resolve().name


def model_path(uri: str) -> Path:
    """The file or directory a model URI names (it may not exist)."""
    return _resolve(uri)[0]


def _not_found(uri: str) -> ModelLoadError:
    return ModelLoadError(
        f"model {uri!r} not found: give an HF model directory, a .gguf file, or "
        f"builtin:NAME ({', '.join(BUILTINS)})"
    )


def load_tokenizer(uri: str) -> Tokenizer:
    """The model's tokenizer alone (the API process needs no weights)."""
    path, _ = _resolve(uri)
    if path.is_dir():
        # The config first, as load_model reads them: an unsupported architecture is
        # refused by name before a missing tokenizer file is.
        hf_dir.read_config(path)
        return hf_dir.read_tokenizer(path)
    if path.is_file() and path.suffix == ".gguf":
        gguf = read_gguf(path)
        read_gguf_config(gguf)  # the architecture first, as for a directory
        return tokenizer_from_gguf(gguf.metadata)
    raise _not_found(uri)


def load_config(uri: str) -> ModelConfig:
    """The model's config alone (parallel degrees are checked before any rank loads)."""
    path, _ = _resolve(uri)
    if path.is_dir():
        return hf_dir.read_config(path)
    if path.is_file() and path.suffix == ".gguf":
        return read_gguf_config(read_gguf(path))
    raise _not_found(uri)


@torch.inference_mode()
def load_model(
    uri: str, *, device: str = "auto", dtype: str = "auto", quantization: str = "auto"
) -> LoadedModel:
    """`quantization`: auto (the checkpoint's own format, else none), none, fp8 or fp4
    (an unquantized checkpoint is quantized at load; engine/quantization/)."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    path, served = _resolve(uri)
    if path.is_dir():
        config = hf_dir.read_config(path)
        tokenizer = hf_dir.read_tokenizer(path)
        scheme = resolve_scheme(quantization, hf_dir.read_quantization_config(path))
        weights = hf_dir.iter_weights(hf_dir.weight_files(path))
    elif path.is_file() and path.suffix == ".gguf":
        gguf = read_gguf(path)
        config = read_gguf_config(gguf)
        tokenizer = tokenizer_from_gguf(gguf.metadata)
        scheme = resolve_scheme(quantization, None)  # GGUF blocks are dequantized at load
        weights = iter_gguf_weights(gguf, config)
    else:
        raise _not_found(uri)
    model = build_model(config, dev, torch_dtype)
    float_bytes = weight_bytes(model)  # uninitialised: sizes only
    if scheme is not None:
        attach_methods(model, scheme)
        weights = used_weights(scheme, weights)
    load_weights(model, weights)  # finishes each layer's format (online: quantizes)
    if scheme is not None:
        finish_loading()
    return LoadedModel(model, config, tokenizer, served, dev, torch_dtype, scheme, float_bytes)


__all__ = [
    "DEFAULT_MODEL", "LoadedModel", "ModelLoadError", "load_config", "load_model", "load_tokenizer",
]  # fmt: skip
