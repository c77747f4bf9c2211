"""Fused RMSNorm(+residual), RoPE and SiLU-mul kernels against their float64 references,
and the references against the engine's torch layers (so a kernel that matches its
reference computes what the CPU path computes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infleet.engine.kernels.reference import rms_norm_ref, rope_ref, silu_mul_ref
from infleet.engine.kernels.rms_norm import rms_norm
from infleet.engine.kernels.rope import apply_rope
from infleet.engine.kernels.silu_mul import silu_mul
from infleet.engine.layers.norm import RMSNorm
from infleet.engine.layers.rotary import RotaryEmbedding
from tests.engine.kernel_cases import DEVICE, relative_error

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
BOUND = {torch.float32: 1e-6, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def _randn(*shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_with_and_without_residual(dtype):
    x, res = _randn(5, 48, dtype=dtype, seed=1), _randn(5, 48, dtype=dtype, seed=2)
    weight = _randn(48, dtype=dtype, seed=3)
    out = rms_norm(x, weight, 1e-6)
    assert (
        relative_error(out, rms_norm_ref(x, weight, 1e-6, compute_dtype=torch.float64))
        < (BOUND[dtype])
    )
    residual = res.clone()
    out, summed = rms_norm(x, weight, 1e-6, residual=residual)
    ref_out, ref_sum = rms_norm_ref(x, weight, 1e-6, res, compute_dtype=torch.float64)
    assert relative_error(out, ref_out) < BOUND[dtype]
    assert torch.equal(summed, ref_sum)  # one rounding of x + residual, as torch does
    assert summed.data_ptr() == residual.data_ptr()  # the new residual is written in place


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul(dtype):
    x = _randn(7, 2 * 40, dtype=dtype, seed=4) * 3
    assert relative_error(silu_mul(x), silu_mul_ref(x, torch.float64)) < BOUND[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_rotates_q_and_k_in_place_inside_a_fused_qkv(dtype):
    heads, kv_heads, dim = 4, 2, 16
    qkv = _randn(6, (heads + 2 * kv_heads) * dim, dtype=dtype, seed=5)
    q = qkv[:, : heads * dim].view(6, heads, dim)  # strided views, as the model slices them
    k = qkv[:, heads * dim : (heads + kv_heads) * dim].view(6, kv_heads, dim)
    v_before = qkv[:, (heads + kv_heads) * dim :].clone()
    rotary = RotaryEmbedding(dim, 128, 10000.0, None).to(device=DEVICE, dtype=dtype)
    positions = torch.tensor([0, 5, 3, 127, 7, 1], device=DEVICE)
    q_ref = rope_ref(positions, q, rotary.cos, rotary.sin, torch.float64)
    k_ref = rope_ref(positions, k, rotary.cos, rotary.sin, torch.float64)
    apply_rope(positions, q, k, rotary.cos, rotary.sin)
    assert relative_error(q, q_ref) < BOUND[dtype]
    assert relative_error(k, k_ref) < BOUND[dtype]
    assert torch.equal(qkv[:, (heads + kv_heads) * dim :], v_before)  # v untouched


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_references_compute_what_the_torch_layers_compute(dtype):
    x = _randn(5, 32, dtype=dtype, seed=6)
    norm = RMSNorm(32, 1e-5).to(device=DEVICE, dtype=dtype)
    norm.weight.data.copy_(_randn(32, dtype=dtype, seed=7))
    assert torch.equal(rms_norm_ref(x, norm.weight, 1e-5), norm(x))
    rotary = RotaryEmbedding(16, 64, 500000.0, None).to(device=DEVICE, dtype=dtype)
    positions = torch.tensor([0, 1, 63, 9, 20], device=DEVICE)
    q = _randn(5, 3, 16, dtype=dtype, seed=8)
    assert torch.equal(rope_ref(positions, q, rotary.cos, rotary.sin), rotary(positions, q))
    gate_up = _randn(5, 64, dtype=dtype, seed=9)
    gate, up = gate_up.chunk(2, dim=-1)
    assert torch.equal(silu_mul_ref(gate_up), F.silu(gate) * up)


def test_shape_errors_name_the_problem():
    with pytest.raises(ValueError, match="silu_mul"):
        silu_mul(torch.zeros(2, 5, device=DEVICE))
    q = torch.zeros(1, 2, 6, device=DEVICE)
    with pytest.raises(ValueError, match="rope"):
        apply_rope(torch.zeros(1, dtype=torch.long), q, q, torch.zeros(4, 2), torch.zeros(4, 2))
