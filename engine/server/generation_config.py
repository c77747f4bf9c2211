"""`--generation-config`: sampling defaults from the model's generation_config.json.

As vLLM reads it: the file's `temperature`, `top_p`, `top_k`, `min_p`,
`repetition_penalty` and `max_new_tokens` become the defaults of requests that do not set
those fields (`max_new_tokens` caps the default `max_tokens`). A value the request sends
always wins. `auto` reads the model's own file (HF directories; a GGUF file has none),
`vllm` and `none` use no model defaults (OpenAI's), and a directory reads its
generation_config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# generation_config.json key -> the SamplingParams field it sets the default of.
_KEYS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
    "max_new_tokens": "max_tokens",
}
MODES = ("auto", "vllm", "none")


def generation_defaults(raw: dict[str, Any]) -> dict[str, float | int]:
    """The sampling defaults a generation_config.json mapping sets (pure)."""
    out: dict[str, float | int] = {}
    for key, field in _KEYS.items():
        value = raw.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[field] = value
    return out


def model_directory(model: str) -> Path | None:
    """The HF directory a --model names, or None (builtin:, .gguf)."""
    path = Path(model).expanduser()
    return path if not model.startswith("builtin:") and path.is_dir() else None


def read_generation_defaults(model: str, mode: str) -> dict[str, float | int]:
    """Raises ValueError naming the flag for a file that is there but unreadable."""
    if mode in ("vllm", "none"):
        return {}
    folder = model_directory(model) if mode == "auto" else Path(mode).expanduser()
    if folder is None:
        return {}
    if mode != "auto" and not folder.is_dir():
        raise ValueError(f"--generation-config {mode}: not auto, vllm, none or a directory")
    path = folder / "generation_config.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--generation-config: cannot read {path}: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"--generation-config: {path} is not a JSON object")
    return generation_defaults(raw)
