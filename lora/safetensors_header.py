"""Reading a safetensors file's header without torch, and refusing a corrupt one.

The format: 8 bytes little-endian header length N, N bytes of JSON mapping each tensor
name to {dtype, shape, data_offsets: [begin, end]} (relative to the data after the
header), then the data. The header alone gives every tensor's name and shape, which is
all adapter validation needs, so the operator can check an adapter with no torch; and the
checks below (offsets inside the file, sizes that match shape x dtype, no overlaps) catch
a truncated or garbled file before a loader trusts it.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from infleet.lora.errors import AdapterError

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


@dataclass(frozen=True, slots=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Name -> dtype and shape of every tensor in `path`; AdapterError if it is corrupt."""
    field = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise AdapterError(field, f"{field} is not a safetensors file ({size} bytes)")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(_MAX_HEADER, size - 8):
                raise AdapterError(field, f"{field}: header length {length} exceeds the file")
            raw = f.read(length)
    except OSError as err:
        raise AdapterError(field, f"cannot read {field}: {err.strerror or err}") from err
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterError(field, f"{field}: header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise AdapterError(field, f"{field}: header is not a JSON object")
    header.pop("__metadata__", None)
    return _check_entries(field, header, data_size=size - 8 - length)


def _check_entries(field: str, header: dict, data_size: int) -> dict[str, TensorInfo]:
    tensors, spans = {}, []
    for name, entry in header.items():
        try:
            dtype, shape = entry["dtype"], tuple(entry["shape"])
            begin, end = entry["data_offsets"]
            itemsize = DTYPE_BYTES[dtype]
            valid = all(isinstance(d, int) and d >= 0 for d in (*shape, begin, end))
        except (KeyError, TypeError, ValueError):
            raise AdapterError(field, f"{field}: tensor {name!r} has a malformed entry") from None
        if not valid or not begin <= end <= data_size:
            raise AdapterError(
                field, f"{field}: tensor {name!r} lies outside the file (truncated?)"
            )
        if end - begin != math.prod(shape) * itemsize:
            raise AdapterError(field, f"{field}: tensor {name!r} size does not match its shape")
        tensors[name] = TensorInfo(dtype, shape)
        spans.append((begin, end, name))
    spans.sort()
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        if begin < end:
            raise AdapterError(field, f"{field}: tensors {first!r} and {second!r} overlap")
    return tensors
