"""Loading a checked adapter's tensors into host memory, ready to copy into a device slot.

Each adapted module keeps A with its scaling folded in (`scaling * A`, computed in float32
then cast to the serving dtype) and B; the slot copy then needs no arithmetic. Tensors are
checked finite: a NaN in one tenant's adapter must be refused at load, not discovered in
its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from infleet.lora.adapter_dir import find_files, read_config
from infleet.lora.base_model import BaseModelShape
from infleet.lora.errors import AdapterError
from infleet.lora.manifest import AdapterManifest, check_tensors
from infleet.lora.safetensors_header import TensorInfo, read_header

_TORCH_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}

# (layer, engine linear name) -> per part of that linear: (scaling * A [r, in], B [out, r]),
# None where the adapter leaves the part alone.
PartWeights = list[tuple[torch.Tensor, torch.Tensor] | None]


@dataclass(slots=True)
class HostAdapter:
    manifest: AdapterManifest
    weights: dict[tuple[int, str], PartWeights]

    @property
    def nbytes(self) -> int:
        pairs = [p for parts in self.weights.values() for p in parts if p is not None]
        return sum(a.nbytes + b.nbytes for a, b in pairs)


def load_adapter(
    directory: Path,
    base: BaseModelShape,
    max_rank: int,
    dtype: torch.dtype,
    lora_dir: Path | None = None,
    pin_memory: bool = False,
) -> HostAdapter:
    """Reads, checks and prepares an adapter; AdapterError names what is wrong."""
    files = find_files(directory, lora_dir)
    config = read_config(files.config)
    if files.is_safetensors:
        manifest = check_tensors(config, read_header(files.weights), base, max_rank)
        tensors = _load_safetensors(files.weights)
    else:
        tensors = _load_bin(files.weights)
        infos = {n: TensorInfo(_TORCH_DTYPES.get(t.dtype, str(t.dtype)), tuple(t.shape))
                 for n, t in tensors.items()}  # fmt: skip
        manifest = check_tensors(config, infos, base, max_rank)
    weights: dict[tuple[int, str], PartWeights] = {}
    for m in manifest.modules:
        a, b = tensors[m.a_name], tensors[m.b_name]
        for name, t in ((m.a_name, a), (m.b_name, b)):
            if not torch.isfinite(t).all():
                raise AdapterError(name, f"tensor {name!r} holds NaN or infinite values")
        a = (a.to(torch.float32) * m.scaling).to(dtype)
        b = b.to(dtype)
        if pin_memory:
            a, b = a.pin_memory(), b.pin_memory()
        parts = weights.setdefault((m.layer, m.linear), [None] * len(base.linear(m.linear).parts))
        parts[m.part] = (a, b)
    return HostAdapter(manifest, weights)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise AdapterError(path.name, f"{path.name} is corrupt: {err}") from err


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for a bad pickle or zip
        raise AdapterError(path.name, f"{path.name} is corrupt: {err}") from err
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise AdapterError(path.name, f"{path.name} is not a mapping of names to tensors")
    return loaded
