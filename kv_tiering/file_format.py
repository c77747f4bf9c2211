"""The NVMe tier's file: one KV block, a 4 KiB header, then the payload.

The header says what the payload is (model fingerprint, dtype, block shape, layout, the
block's chained hash) and carries a CRC-32 of the payload and one of itself. A reader
accepts a file only when every field matches what it expects; anything else (truncated,
corrupt, written for another model or another block) is `BadBlockFile`, which the tier
turns into a miss. CRC-32 because it runs at GB/s (blake2b is ~10x slower here) and the
threat is torn or rotten bytes, not an adversary: the files are 0600 in a 0700 directory.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from infleet.kv_tiering.layout import IO_ALIGN, BlockLayout

HEADER_BYTES = IO_ALIGN
MAGIC = b"IFKVBLK\0"
VERSION = 1
# The payload is one block-first unit [2, layers, block_size, kv_heads, head_dim].
LAYOUT_BLOCK_FIRST = 1
FINGERPRINT_BYTES = 32
MAX_KEY_BYTES = 32
_FIELDS = struct.Struct("<8sHH32s16sIIIIB32sQI")


class BadBlockFile(Exception):
    """A block file that must not be used; the message says why (for the log)."""


@dataclass(frozen=True, slots=True)
class FileHeader:
    fingerprint: bytes
    dtype_name: str
    num_layers: int
    block_size: int
    num_kv_heads: int
    head_dim: int
    key: bytes
    payload_bytes: int
    payload_crc: int


def payload_checksum(payload: memoryview | bytes) -> int:
    return zlib.crc32(payload)


def header_for(fingerprint: bytes, layout: BlockLayout, key: bytes, payload_crc: int) -> FileHeader:
    return FileHeader(
        fingerprint, layout.dtype_name, layout.num_layers, layout.block_size,
        layout.num_kv_heads, layout.head_dim, key, layout.block_bytes, payload_crc,
    )  # fmt: skip


def pack_header(h: FileHeader) -> bytes:
    if len(h.fingerprint) != FINGERPRINT_BYTES:
        raise ValueError(
            f"a model fingerprint is {FINGERPRINT_BYTES} bytes, got {len(h.fingerprint)}"
        )
    if not 0 < len(h.key) <= MAX_KEY_BYTES:
        raise ValueError(f"a block key is 1..{MAX_KEY_BYTES} bytes, got {len(h.key)}")
    fields = _FIELDS.pack(
        MAGIC, VERSION, LAYOUT_BLOCK_FIRST, h.fingerprint, h.dtype_name.encode("ascii"),
        h.num_layers, h.block_size, h.num_kv_heads, h.head_dim,
        len(h.key), h.key, h.payload_bytes, h.payload_crc,
    )  # fmt: skip
    body = fields + struct.pack("<I", zlib.crc32(fields))
    return body.ljust(HEADER_BYTES, b"\0")


def parse_header(buf: bytes | memoryview) -> FileHeader:
    """Raises BadBlockFile when buf is not an intact header of a version we read."""
    end = _FIELDS.size
    if len(buf) < end + 4:
        raise BadBlockFile("truncated header")
    fields = bytes(buf[:end])
    (crc,) = struct.unpack("<I", buf[end : end + 4])
    if zlib.crc32(fields) != crc:
        raise BadBlockFile("header checksum mismatch")
    magic, version, layout, fp, dtype, layers, bs, heads, dim, klen, key, nbytes, pcrc = (
        _FIELDS.unpack(fields)
    )
    if magic != MAGIC:
        raise BadBlockFile("not a KV block file")
    if version != VERSION or layout != LAYOUT_BLOCK_FIRST:
        raise BadBlockFile(f"format version {version} layout {layout}, this reader knows 1/1")
    return FileHeader(
        fp, dtype.rstrip(b"\0").decode("ascii"), layers, bs, heads, dim, key[:klen], nbytes, pcrc
    )


def check_header(h: FileHeader, fingerprint: bytes, layout: BlockLayout, key: bytes) -> None:
    """Raises BadBlockFile unless the header describes exactly this block of this model."""
    if h.fingerprint != fingerprint:
        raise BadBlockFile("written for another model (fingerprint differs)")
    expected = header_for(fingerprint, layout, key, h.payload_crc)
    if h != expected:
        raise BadBlockFile(f"header {h} does not describe the expected block {expected}")
