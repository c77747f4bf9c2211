"""Triton KV write against the torch reference: same bytes in every slot it owns, and
nothing else touched (negative slots are CUDA-graph padding and must be skipped)."""

from __future__ import annotations

import pytest
import torch

from infleet.engine.kernels.fp8 import FP8_DTYPE
from infleet.engine.kernels.kv_write import write_kv
from infleet.engine.kernels.reference import write_kv_ref
from tests.engine.kernel_cases import DEVICE


def _bytes(cache: torch.Tensor) -> torch.Tensor:
    return cache.view(torch.uint8)


@pytest.mark.parametrize(
    ("kv_dtype", "scale_heads"),
    [(torch.float32, 0), (torch.bfloat16, 0), (FP8_DTYPE, 3), (FP8_DTYPE, 1)],
)
def test_write_matches_reference_byte_for_byte(kv_dtype, scale_heads):
    gen = torch.Generator().manual_seed(int(scale_heads) + 7)
    num_tokens, heads, dim = 9, 3, 24
    key = (torch.randn(num_tokens, heads, dim, generator=gen) * 4).to(DEVICE)
    value = torch.randn(num_tokens, heads, dim, generator=gen).to(DEVICE)
    # Scattered slots over 3 blocks of 16, one padding row (-1).
    slots = torch.tensor([3, 17, -1, 47, 40, 0, 15, 16, 33], device=DEVICE)
    poison = torch.randn(3, 16, heads, dim, generator=gen).to(kv_dtype).to(DEVICE)
    k_cache, v_cache = poison.clone(), poison.clone()
    k_ref, v_ref = poison.clone(), poison.clone()
    scales = (None, None)
    if scale_heads:
        scales = tuple((torch.rand(scale_heads, generator=gen) + 0.1).to(DEVICE) for _ in "kv")
    write_kv(key, value, k_cache, v_cache, slots, *scales)
    write_kv_ref(key, value, k_ref, v_ref, slots, *scales)
    assert torch.equal(_bytes(k_cache), _bytes(k_ref))
    assert torch.equal(_bytes(v_cache), _bytes(v_ref))
    untouched = torch.ones(48, dtype=torch.bool)
    untouched[slots[slots >= 0].cpu()] = False
    flat = _bytes(k_cache).view(48, -1)[untouched.to(DEVICE)]
    assert torch.equal(flat, _bytes(poison).view(48, -1)[untouched.to(DEVICE)])


def test_fp8_write_saturates_instead_of_overflowing():
    key = torch.tensor([[[1000.0, -1000.0, 3.0, 0.0]]], device=DEVICE)
    k_cache = torch.zeros(1, 16, 1, 4, dtype=FP8_DTYPE, device=DEVICE)
    v_cache = k_cache.clone()
    one = torch.ones(1, device=DEVICE)
    write_kv(key, key, k_cache, v_cache, torch.tensor([5], device=DEVICE), one, one)
    assert k_cache[0, 5, 0].float().tolist() == [448.0, -448.0, 3.0, 0.0]


def test_fp8_write_needs_scales():
    key = torch.zeros(1, 1, 4, device=DEVICE)
    cache = torch.zeros(1, 16, 1, 4, dtype=FP8_DTYPE, device=DEVICE)
    with pytest.raises(ValueError, match="scale"):
        write_kv(key, key, cache, cache, torch.tensor([0], device=DEVICE))
