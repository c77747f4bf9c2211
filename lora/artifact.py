"""An adapter as one artifact: its two files in a canonical tar, named by its sha256.

The operator fetches an adapter (a directory URL or a tenant's .tar.gz), checks it and
packs it here; the engines download that tar, check its digest and unpack it here. The tar
is canonical (fixed order, mode, owner and time), so the same files always give the same
checksum, whatever archive or server they came from. Torch-free, stdlib only.

Unpacking never touches the filesystem through a member's name: only regular files whose
base name is one of the two adapter files are read, into memory, each within a size limit
(a tenant's archive is untrusted: no path traversal, no links, no tar bombs).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from infleet.lora.adapter_dir import read_config
from infleet.lora.errors import AdapterError
from infleet.lora.manifest import FLOAT_DTYPES
from infleet.lora.safetensors_header import read_header

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
FILES = (CONFIG_FILE, WEIGHTS_FILE)
MAX_BYTES = 2 << 30  # one adapter, both files: far above any LoRA of a served model
MAX_MEMBERS = 64  # a tenant's archive may carry a README or a tokenizer; not thousands


@dataclass(frozen=True, slots=True)
class PackedAdapter:
    data: bytes  # the canonical tar
    digest: str  # sha256 hex of `data`

    @property
    def checksum(self) -> str:
        return f"sha256:{self.digest}"

    @property
    def size(self) -> int:
        return len(self.data)


def pack(files: dict[str, bytes]) -> PackedAdapter:
    """The canonical tar of exactly the two adapter files."""
    missing = [name for name in FILES if name not in files]
    if missing:
        raise AdapterError(missing[0], f"{missing[0]} is missing from the adapter")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in FILES:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o444, 0
            tar.addfile(info, io.BytesIO(files[name]))
    data = out.getvalue()
    return PackedAdapter(data, hashlib.sha256(data).hexdigest())


def unpack(data: bytes, max_bytes: int = MAX_BYTES) -> dict[str, bytes]:
    """The adapter files of a tar or .tar.gz (the canonical one or a tenant's), found by
    base name at any depth up to one folder; AdapterError when it is not a readable
    archive or lacks a file."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for count, member in enumerate(tar):
                if count >= MAX_MEMBERS:
                    raise AdapterError("uri", f"the archive has over {MAX_MEMBERS} entries")
                parts = Path(member.name).parts
                base = parts[-1] if parts else ""
                if base not in FILES or len(parts) > 2 or not member.isreg():
                    continue
                if base in found:
                    raise AdapterError(base, f"the archive holds {base} twice")
                if member.size > max_bytes - sum(map(len, found.values())):
                    raise AdapterError(base, f"the adapter is larger than {max_bytes} bytes")
                reader = tar.extractfile(member)
                assert reader is not None  # a regular file
                found[base] = reader.read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        if isinstance(err, AdapterError):
            raise
        raise AdapterError("uri", f"the archive cannot be read: {err}") from None
    for name in FILES:
        if name not in found:
            raise AdapterError(name, f"{name} is missing from the archive")
    return found


def unpack_checked(data: bytes, digest: str) -> dict[str, bytes]:
    """The files of a canonical tar whose sha256 must be `digest` (hex)."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise AdapterError("sha256", f"the artifact's sha256 is {actual}, expected {digest}")
    return unpack(data)


def check_format(directory: Path) -> int:
    """The adapter's rank, after the checks that need no base model: a plain-LoRA
    adapter_config.json and a sound safetensors file of 2-D float tensors (their fit to a
    base model is the engine's check, `adapter_dir.inspect_adapter`)."""
    config = read_config(directory / CONFIG_FILE)
    tensors = read_header(directory / WEIGHTS_FILE)
    ranks = [config.rank, *config.rank_pattern.values()]
    for name, info in tensors.items():
        if info.dtype not in FLOAT_DTYPES or len(info.shape) != 2:
            raise AdapterError(name, f"tensor {name!r} is not a 2-D float matrix")
        if ".lora_A" in name:
            ranks.append(info.shape[0])
    if not tensors:
        raise AdapterError(WEIGHTS_FILE, "the adapter holds no tensors")
    return max(ranks)
