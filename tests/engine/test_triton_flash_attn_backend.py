"""The optional flash-attn backend: when it can be chosen, and (where flash_attn is
installed on a GPU) that it attends exactly like our Triton kernel."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from infleet.engine.kernels.flash_attn_backend import unsupported_reason, window_size
from infleet.engine.kernels.fp8 import FP8_DTYPE

HAS_FLASH_ATTN = importlib.util.find_spec("flash_attn") is not None


def test_unsupported_configurations_say_why():
    if not HAS_FLASH_ATTN:
        assert "not installed" in unsupported_reason(256, torch.bfloat16)
        return
    assert unsupported_reason(256, torch.bfloat16) is None
    assert "multiple of 256" in unsupported_reason(16, torch.bfloat16)
    assert "fp8" in unsupported_reason(256, FP8_DTYPE)


def test_sliding_window_maps_to_flash_attn_left_right():
    assert window_size(None) == (-1, -1)
    assert window_size(4096) == (4095, 0)  # p - 4096 < j <= p


@pytest.mark.gpu
@pytest.mark.skipif(
    not (HAS_FLASH_ATTN and torch.cuda.is_available()),
    reason="flash_attn is not installed here (it cannot be built on these machines) or no GPU",
)
def test_flash_attn_backend_matches_the_triton_kernel():
    from infleet.engine.attention.context import AttentionContext, reset_context, set_context
    from infleet.engine.kernels.flash_attn_backend import FlashAttnBackend
    from infleet.engine.kernels.paged_attention import paged_attention
    from tests.engine.kernel_cases import paged_batch, relative_error

    for q_lens, ctx_lens in (([1, 20, 17], [300, 290, 17]), ([1, 1], [600, 5])):
        b = paged_batch(q_lens, ctx_lens, num_q_heads=8, num_kv_heads=2, head_dim=128,
                        dtype=torch.bfloat16, page=256)  # fmt: skip
        set_context(AttentionContext(
            b.cu_seqlens_q, b.context_lens, b.block_tables,
            torch.full((b.q.shape[0],), -1, dtype=torch.int64, device=b.q.device),
            torch.zeros(b.q.shape[0], dtype=torch.int64, device=b.q.device), 256, q_lens, ctx_lens,
        ))  # fmt: skip
        try:
            new_kv = torch.zeros(b.q.shape[0], 2, 128, dtype=torch.bfloat16, device=b.q.device)
            out = FlashAttnBackend().forward(b.q, new_kv, new_kv, b.k_cache, b.v_cache,
                                             scale=128**-0.5, sliding_window=None)  # fmt: skip
        finally:
            reset_context()
        ref = paged_attention(b.q, b.k_cache, b.v_cache, b.cu_seqlens_q, b.context_lens,
                              b.block_tables, scale=128**-0.5)  # fmt: skip
        assert relative_error(out, ref) < 1e-2
