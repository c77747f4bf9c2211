"""A small reader of the GGUF container: metadata, tensor index, tensor bytes (memory-mapped).

The `gguf` package's own reader builds a numpy view per string (~6 s for a 49k-token vocab);
parsing the header with `struct` takes milliseconds. Dequantization still uses `gguf.quants`.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (version 2 and 3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from infleet.engine.model_config import ModelLoadError

_SCALARS = {  # GGUF value type -> struct format
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8", 11: "<i8", 12: "<f8"}  # fmt: skip
_STRING, _ARRAY = 8, 9


@dataclass(slots=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # numpy order (rows first): the reverse of GGUF's dims
    qtype: GGMLQuantizationType
    raw: np.ndarray  # uint8 bytes, memory-mapped


@dataclass(slots=True)
class GGUFFile:
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensor]


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos]).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in _NUMPY:  # numeric arrays in one read
                arr = np.frombuffer(self.buf, dtype=_NUMPY[etype], count=count, offset=self.pos)
                self.pos += arr.nbytes
                return arr.tolist()
            return [self.value(etype) for _ in range(count)]
        if vtype not in _SCALARS:
            raise ModelLoadError(f"GGUF metadata has unknown value type {vtype}")
        return self.unpack(_SCALARS[vtype])


def read_gguf(path: str | Path) -> GGUFFile:
    data = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(memoryview(data))
    if bytes(data[:4]) != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (bad magic)")
    cur.pos = 4
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise ModelLoadError(f"{path}: GGUF version {version} is not supported (2 or 3)")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    metadata = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.unpack("<I"))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = [cur.unpack("<Q") for _ in range(cur.unpack("<I"))]
        infos.append(
            (name, tuple(reversed(dims)), GGMLQuantizationType(cur.unpack("<I")), cur.unpack("<Q"))
        )
    align = int(metadata.get("general.alignment", 32))
    start = -(-cur.pos // align) * align
    tensors = {}
    for name, shape, qtype, offset in infos:
        block, block_bytes = GGML_QUANT_SIZES[qtype]
        nbytes = int(np.prod(shape)) // block * block_bytes
        raw = data[start + offset : start + offset + nbytes]
        tensors[name] = GGUFTensor(name, shape, qtype, raw)
    return GGUFFile(metadata, tensors)
