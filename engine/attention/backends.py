"""Choosing an attention backend by name (`--attention-backend`).

A backend is an object with `name` and
`forward(q, k, v, k_cache, v_cache, *, scale, sliding_window) -> out`: it stores this
step's K/V into the paged cache (via the context's slot_mapping) and attends each query
over its sequence's cached context. Entries are import paths, so a backend whose
dependencies are missing fails only when chosen. `auto` is SDPA on CPU; on CUDA it is
flash-attn where that imports and suits the cache, else our Triton kernels (docs/gpu.md).
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
        k_scale: torch.Tensor | None = None,  # fp8 caches: float32 [1] or [Hkv]
        v_scale: torch.Tensor | None = None,
    ) -> torch.Tensor: ...


_BACKENDS = {
    "reference": "infleet.engine.attention.reference:ReferenceBackend",
    "sdpa": "infleet.engine.attention.sdpa:SdpaBackend",
    "triton": "infleet.engine.attention.triton_backend:TritonBackend",
    "flash-attn": "infleet.engine.kernels.flash_attn_backend:FlashAttnBackend",
}
# `torch` in the CLI means our torch-only backends; SDPA is the faster of the two on CPU
# (docs/engine.md has the numbers), the reference one stays as the correctness oracle.
_ALIASES = {"torch": "sdpa"}
_CUDA_ONLY = ("triton", "flash-attn")


def available_backends() -> list[str]:
    return [*_BACKENDS, *_ALIASES, "auto"]


def _flash_attn_unsupported(block_size: int, kv_dtype: torch.dtype | None) -> str | None:
    from infleet.engine.kernels.flash_attn_backend import unsupported_reason

    return unsupported_reason(block_size, kv_dtype)


def select_backend(
    name: str, device: torch.device, *, block_size: int = 16, kv_dtype: torch.dtype | None = None
) -> AttentionBackend:
    if name == "auto":
        if device.type != "cuda":
            name = "sdpa"
        else:
            name = "triton" if _flash_attn_unsupported(block_size, kv_dtype) else "flash-attn"
    name = _ALIASES.get(name, name)
    if name not in _BACKENDS:
        raise ValueError(
            f"unknown attention backend {name!r}; available: {', '.join(available_backends())}"
        )
    if name in _CUDA_ONLY and device.type != "cuda":
        raise ValueError(f"attention backend {name!r} needs a CUDA device; on {device} use torch")
    if name == "flash-attn" and (reason := _flash_attn_unsupported(block_size, kv_dtype)):
        raise ValueError(f"attention backend 'flash-attn': {reason}")
    module, cls = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
