"""The model fingerprint every NVMe block file carries: blocks computed by one model are
never served to another (a changed checkpoint, config, dtype or KV quantization scale
makes old files foreign, hence misses).

Hashing every weight byte would cost seconds per GB at each start, so the weights enter
by name, size and their first and last MiB: a different checkpoint (even one with the same
shapes, like two random initialisations) differs there. What else decides a KV block's
bytes (the KV dtype and its scales, RoPE settings) goes in `extra` or in `config`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from infleet.kv_tiering.file_format import FINGERPRINT_BYTES

_SAMPLE = 1 << 20


def model_fingerprint(
    config: Mapping[str, object], weight_files: Iterable[Path], extra: bytes = b""
) -> bytes:
    """32 bytes naming a model: its config (any JSON-able mapping), a sample of each
    weight file, and `extra`. Raises OSError when a weight file cannot be read."""
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for path in sorted(Path(p) for p in weight_files):
        size = path.stat().st_size
        h.update(f"\0{path.name}\0{size}\0".encode())
        with path.open("rb") as f:
            h.update(f.read(_SAMPLE))
            if size > _SAMPLE:
                f.seek(max(_SAMPLE, size - _SAMPLE), os.SEEK_SET)
                h.update(f.read(_SAMPLE))
    h.update(extra)
    digest = h.digest()
    assert len(digest) == FINGERPRINT_BYTES
    return digest
