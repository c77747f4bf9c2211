"""Choosing an attention backend by name (`--attention-backend`).

A backend is an object with `name` and
`forward(q, k, v, k_cache, v_cache, *, scale, sliding_window) -> out`: it stores this
step's K/V into the paged cache (via the context's slot_mapping) and attends each query
over its sequence's cached context. Entries are import paths, so a backend whose
dependencies are missing fails only when chosen; a new backend (e.g. Triton) adds one line
to `_BACKENDS` and its name to the front of `_AUTO[device]`.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import torch


class AttentionBackend(Protocol):
    name: str

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        *,
        scale: float,
        sliding_window: int | None,
    ) -> torch.Tensor: ...


_BACKENDS = {
    "reference": "infleet.engine.attention.reference:ReferenceBackend",
    "sdpa": "infleet.engine.attention.sdpa:SdpaBackend",
}
# `torch` in the CLI means our torch-only backends; SDPA is the faster of the two on CPU
# (docs/engine.md has the numbers), the reference one stays as the correctness oracle.
_ALIASES = {"torch": "sdpa"}
_AUTO = {"cpu": ("sdpa",), "cuda": ("sdpa",)}


def available_backends() -> list[str]:
    return [*_BACKENDS, *_ALIASES, "auto"]


def select_backend(name: str, device: torch.device) -> AttentionBackend:
    if name == "auto":
        name = _AUTO.get(device.type, ("sdpa",))[0]
    name = _ALIASES.get(name, name)
    if name not in _BACKENDS:
        raise ValueError(
            f"unknown attention backend {name!r}; available: {', '.join(available_backends())}"
        )
    module, cls = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
