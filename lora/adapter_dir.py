"""A PEFT adapter directory on disk: adapter_config.json + adapter_model.safetensors (or
the older adapter_model.bin), found, read and checked against a base model.

`inspect_adapter` needs no torch (it reads the safetensors header), so the operator can
vet an adapter before any engine loads it; a `.bin` file is a pickle that only torch can
read, so it is checked by the engine's loader (host_weights.py) after loading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from infleet.lora.adapter_config import AdapterConfig, parse_adapter_config
from infleet.lora.base_model import BaseModelShape
from infleet.lora.errors import AdapterError
from infleet.lora.lora_dir import resolve_inside
from infleet.lora.manifest import AdapterManifest, check_tensors
from infleet.lora.safetensors_header import read_header

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")  # in order of preference


@dataclass(frozen=True, slots=True)
class AdapterFiles:
    config: Path
    weights: Path

    @property
    def is_safetensors(self) -> bool:
        return self.weights.suffix == ".safetensors"


def find_files(directory: Path, lora_dir: Path | None = None) -> AdapterFiles:
    """The two files of the adapter in `directory`; with `lora_dir`, each file must also
    resolve inside it (a symlinked file must not reach outside)."""
    if not directory.is_dir():
        raise AdapterError("lora_path", f"adapter directory {str(directory)!r} does not exist")
    config = directory / CONFIG_FILE
    weights = next((directory / n for n in WEIGHT_FILES if (directory / n).is_file()), None)
    if not config.is_file():
        raise AdapterError(CONFIG_FILE, f"{CONFIG_FILE} is missing from {str(directory)!r}")
    if weights is None:
        raise AdapterError(
            WEIGHT_FILES[0], f"{' or '.join(WEIGHT_FILES)} is missing from {str(directory)!r}"
        )
    if lora_dir is not None:
        config = resolve_inside(lora_dir, str(config))
        weights = resolve_inside(lora_dir, str(weights))
    return AdapterFiles(config, weights)


def read_config(path: Path) -> AdapterConfig:
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise AdapterError(CONFIG_FILE, f"cannot read {CONFIG_FILE}: {err.strerror}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterError(CONFIG_FILE, f"{CONFIG_FILE} is not valid JSON ({err})") from err
    return parse_adapter_config(raw)


def inspect_adapter(
    directory: Path, base: BaseModelShape, max_rank: int, lora_dir: Path | None = None
) -> AdapterManifest:
    """Checks a safetensors adapter without torch; AdapterError names what is wrong."""
    files = find_files(directory, lora_dir)
    if not files.is_safetensors:
        raise AdapterError(files.weights.name, "a .bin adapter can only be checked with torch")
    return check_tensors(read_config(files.config), read_header(files.weights), base, max_rank)
