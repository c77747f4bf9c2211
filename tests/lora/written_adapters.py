"""PEFT LoRA adapters written as files (safetensors + adapter_config.json), for the
onboarding tests: the real on-disk format, any base shape, no torch or peft needed."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from infleet.lora.artifact import CONFIG_FILE, WEIGHTS_FILE


@dataclass(frozen=True, slots=True)
class Base:
    hidden: int
    layers: int
    q: int  # heads x head_dim
    kv: int  # kv heads x head_dim


SMOLLM2 = Base(hidden=576, layers=30, q=9 * 64, kv=3 * 64)  # builtin:smollm2-135m-instruct
OTHER = Base(hidden=1024, layers=4, q=1024, kv=256)  # some other base model


def adapter_files(
    base: Base = SMOLLM2, rank: int = 8, seed: int = 0, b_std: float = 0.0
) -> dict[str, bytes]:
    """q_proj and v_proj adapted in every layer, peft's tensor names. B is zero (peft's
    initial adapter: it changes nothing) unless `b_std` gives it random values."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(base.layers):
        for module, out in (("q_proj", base.q), ("v_proj", base.kv)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal(
                (rank, base.hidden), dtype=np.float32
            )
            b = np.zeros((out, rank), dtype=np.float32)
            if b_std:
                b = (rng.standard_normal((out, rank)) * b_std).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = b
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
    }
    return {CONFIG_FILE: json.dumps(config).encode(), WEIGHTS_FILE: save(tensors)}


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (root / name).write_bytes(body)
    return root


def targz(files: dict[str, bytes], folder: str = "adapter") -> bytes:
    """A tenant's .tar.gz, the files in one folder (as `tar czf` of a directory makes)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()
