"""`--lora-dir DIR`: a runtime-loaded adapter's path must stay inside DIR.

The path is resolved first (every symlink followed, `..` collapsed), then compared, so
neither `DIR/../etc` nor a symlink in DIR pointing elsewhere escapes. The files inside an
adapter directory go through the same check (a symlinked adapter_model.safetensors is a
path too). The caller reads the returned resolved path, not the one it was given.
"""

from __future__ import annotations

import os
from pathlib import Path

from infleet.lora.errors import AdapterError


def resolve_inside(lora_dir: str | os.PathLike[str], lora_path: str) -> Path:
    """`lora_path` (absolute, or relative to `lora_dir`) resolved; AdapterError on field
    `lora_path` unless it lies strictly inside `lora_dir`. The message never shows where
    an escaping path points."""
    if not isinstance(lora_path, str) or not lora_path:
        raise AdapterError("lora_path", "lora_path must be a non-empty string")
    if "\0" in lora_path:
        raise AdapterError("lora_path", "lora_path contains a NUL character")
    root = Path(os.path.realpath(lora_dir))
    resolved = Path(os.path.realpath(root / lora_path))  # an absolute lora_path replaces root
    if resolved == root or not resolved.is_relative_to(root):
        raise AdapterError("lora_path", f"lora_path {lora_path!r} resolves outside --lora-dir")
    return resolved
