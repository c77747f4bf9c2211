"""GGUF tensor bytes -> float32 torch tensor.

Q8_0, Q4_0 and Q4_1 (what small llama.cpp models ship in) are unpacked here in a few
whole-array numpy ops, several times faster than `gguf.quants.dequantize` (SmolLM2-135M:
about 1 s instead of 8 s); every other type goes through `gguf.quants`.
"""

from __future__ import annotations

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize as gguf_dequantize


def _scale(blocks: np.ndarray, at: int) -> np.ndarray:
    """The fp16 number at byte `at` of each block, as float32 `[n_blocks, 1]`."""
    return blocks[:, at : at + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """16 bytes per block -> 32 values: low nibbles are elements 0-15, high nibbles 16-31."""
    return np.concatenate((packed & 0x0F, packed >> 4), axis=1).astype(np.float32)


def _dequantize_numpy(raw: np.ndarray, qtype: Q, shape: tuple[int, ...]) -> np.ndarray:
    if qtype == Q.F32:
        return raw.view(np.float32).copy()
    if qtype == Q.F16:
        return raw.view(np.float16).astype(np.float32)
    if qtype == Q.Q8_0:  # [d: f16][32 x int8]; value = d * q
        blocks = raw.reshape(-1, 34)
        return _scale(blocks, 0) * blocks[:, 2:].view(np.int8).astype(np.float32)
    if qtype == Q.Q4_0:  # [d: f16][16 bytes of nibbles]; value = d * (q - 8)
        blocks = raw.reshape(-1, 18)
        return _scale(blocks, 0) * (_nibbles(blocks[:, 2:]) - 8)
    if qtype == Q.Q4_1:  # [d: f16][m: f16][16 bytes of nibbles]; value = d * q + m
        blocks = raw.reshape(-1, 20)
        return _scale(blocks, 0) * _nibbles(blocks[:, 4:]) + _scale(blocks, 2)
    rows = int(np.prod(shape[:-1]))
    return gguf_dequantize(raw.reshape(rows, -1), qtype)


def dequantize(raw: np.ndarray, qtype: Q, shape: tuple[int, ...]) -> torch.Tensor:
    if qtype == Q.BF16:  # numpy has no bfloat16
        return torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(shape).float()
    values = _dequantize_numpy(np.asarray(raw), qtype, shape)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(shape)
