"""Triton paged attention against the float64 reference, on fresh random inputs.

Runs on the GPU where there is one, else in Triton's interpreter on CPU. Bounds are
METHOD.md's for the dtype: float32 far under 1e-3, bf16/fp16 operands under 1e-2.
"""

from __future__ import annotations

import pytest
import torch

from infleet.engine.kernels.fp8 import FP8_DTYPE
from infleet.engine.kernels.paged_attention import choose_num_splits, paged_attention
from infleet.engine.kernels.reference import paged_attention_ref
from tests.engine.kernel_cases import paged_batch, relative_error

BOUND = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
# A decode (2 full blocks + part), a prefill chunk after 30 cached tokens (crosses blocks),
# a fresh prompt with a partial last block, and a decode whose context is one token.
MIXED = ([1, 20, 17, 1], [37, 50, 17, 1])
DECODES = ([1, 1, 1], [200, 5, 70])


def check(batch, *, num_splits=1, sliding_window=None, scale=None) -> float:
    head_dim = batch.q.shape[-1]
    scale = scale or head_dim**-0.5
    out = torch.full_like(batch.q, float("nan"))  # every element must be written
    kwargs = dict(scale=scale, k_scale=batch.k_scale, v_scale=batch.v_scale)
    paged_attention(
        batch.q, batch.k_cache, batch.v_cache, batch.cu_seqlens_q, batch.context_lens,
        batch.block_tables, num_splits=num_splits, sliding_window=sliding_window, out=out,
        **kwargs,
    )  # fmt: skip
    ref = paged_attention_ref(
        batch.q.double(), batch.k_cache, batch.v_cache, batch.cu_seqlens_q, batch.context_lens,
        batch.block_tables, sliding_window=sliding_window, compute_dtype=torch.float64,
        **kwargs,
    )  # fmt: skip
    assert not out.isnan().any(), "an output element was never written"
    return relative_error(out, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mixed_decode_and_prefill_chunks(dtype):
    batch = paged_batch(*MIXED, num_q_heads=4, num_kv_heads=2, head_dim=32, dtype=dtype, seed=1)
    assert check(batch) < BOUND[dtype]


def test_odd_group_and_head_dim():
    # 3 query heads per KV head and head_dim 24: both padded inside the kernel.
    batch = paged_batch(
        *MIXED, num_q_heads=6, num_kv_heads=2, head_dim=24, dtype=torch.float16, seed=2
    )
    assert check(batch) < BOUND[torch.float16]


@pytest.mark.parametrize("num_splits", [1, 2, 4])
def test_decode_split_kv(num_splits):
    # 200 keys = 4 key tiles: 4 splits of one tile; the 5-key sequence leaves splits empty.
    batch = paged_batch(
        *DECODES, num_q_heads=8, num_kv_heads=2, head_dim=16, dtype=torch.float32, seed=3
    )
    assert check(batch, num_splits=num_splits) < BOUND[torch.float32]


def test_split_kv_on_a_mixed_batch():
    batch = paged_batch(
        [3, 1], [70, 66], num_q_heads=2, num_kv_heads=1, head_dim=16, dtype=torch.float32, seed=4
    )
    assert check(batch, num_splits=2) < BOUND[torch.float32]


@pytest.mark.parametrize("per_head", [True, False])
def test_fp8_cache_with_scales(per_head):
    """The reference dequantizes the same e4m3 cache: this checks the kernel's reading
    and scaling, not the quantization error (test_fp8_kv_cache covers that)."""
    for q_lens, ctx_lens, splits in ((*MIXED, 1), (*DECODES, 2)):
        batch = paged_batch(
            q_lens, ctx_lens, num_q_heads=4, num_kv_heads=2, head_dim=32,
            dtype=torch.bfloat16, kv_dtype=FP8_DTYPE, per_head_scales=per_head, seed=5,
        )  # fmt: skip
        assert check(batch, num_splits=splits) < BOUND[torch.bfloat16]


def test_sliding_window():
    batch = paged_batch(*MIXED, num_q_heads=4, num_kv_heads=2, head_dim=16, dtype=torch.float32)
    assert check(batch, sliding_window=20) < BOUND[torch.float32]


def test_fresh_inputs_each_seed_agree():
    """Same function on any valid input: a second draw of the mixed case also matches."""
    for seed in (11, 12):
        batch = paged_batch(
            *MIXED, num_q_heads=4, num_kv_heads=4, head_dim=16, dtype=torch.float32, seed=seed
        )
        assert check(batch, scale=0.3) < BOUND[torch.float32]


def test_bad_arguments_are_refused():
    batch = paged_batch(*DECODES, num_q_heads=4, num_kv_heads=2, head_dim=16, dtype=torch.float32)
    args = (batch.q, batch.k_cache, batch.v_cache, batch.cu_seqlens_q, batch.context_lens)
    with pytest.raises(ValueError, match="power of two"):
        paged_attention(*args, batch.block_tables, scale=1.0, num_splits=3)
    fp8 = batch.k_cache.to(FP8_DTYPE)
    with pytest.raises(ValueError, match="k_scale"):
        paged_attention(batch.q, fp8, fp8, *args[3:], batch.block_tables, scale=1.0)
    with pytest.raises(ValueError, match="group"):
        paged_attention(batch.q[:, :3], *args[1:], batch.block_tables, scale=1.0)


def test_num_splits_fills_idle_sms_only_for_long_contexts():
    assert choose_num_splits(num_programs=8, max_context_len=8192, num_sms=132) == 16
    assert choose_num_splits(num_programs=8, max_context_len=1024, num_sms=132) == 4
    assert choose_num_splits(num_programs=40, max_context_len=8192, num_sms=132) == 4
    assert choose_num_splits(num_programs=256, max_context_len=8192, num_sms=132) == 1
    assert choose_num_splits(num_programs=8, max_context_len=100, num_sms=132) == 1
