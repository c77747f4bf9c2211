"""FP8 (e4m3) KV cache: capacity at a fixed KV memory, the quantization error it adds,
and the pool sizing it feeds (engine/gpu_memory.py)."""

from __future__ import annotations

import pytest
import torch

from infleet.engine.gpu_memory import kv_blocks_for_memory, profile_batch
from infleet.engine.kernels.fp8 import (
    FP8_DTYPE,
    dequantize_fp8,
    kv_cache_torch_dtype,
    quantize_fp8,
    scales_from_amax,
)
from infleet.engine.model_config import ModelConfig
from infleet.engine.runner import ModelRunner
from tests.engine.kernel_cases import relative_error

# Llama-3.1-8B's attention shape: 32 layers, 8 KV heads of 128.
LLAMA_8B = ModelConfig(
    architecture="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
    num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
    max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
)  # fmt: skip


def _sequences_at(context: int, kv_memory: int, kv_dtype: torch.dtype, block_size=16) -> int:
    per_block = ModelRunner.kv_bytes_per_block(LLAMA_8B, block_size, kv_dtype)
    blocks = kv_blocks_for_memory(kv_memory, 1.0, 0, 0, per_block)
    return blocks // -(-context // block_size)


def test_fp8_doubles_the_sequences_that_fit_at_4k_context():
    """Goal: >= 1.6x concurrent 4k-token sequences for the same KV memory (H100: ~60 GiB
    left for KV after the 8B model's 16 GiB of bf16 weights)."""
    memory = 60 * 2**30
    bf16 = _sequences_at(4096, memory, torch.bfloat16)
    fp8 = _sequences_at(4096, memory, kv_cache_torch_dtype("fp8", torch.bfloat16))
    assert bf16 == 120  # 128 KiB of K+V per token in bf16
    assert fp8 == 240 and fp8 / bf16 >= 1.6


def test_kv_cache_dtype_flag():
    assert kv_cache_torch_dtype("auto", torch.bfloat16) is torch.bfloat16
    assert kv_cache_torch_dtype("fp8", torch.float32) is FP8_DTYPE
    with pytest.raises(ValueError, match="--kv-cache-dtype"):
        kv_cache_torch_dtype("int4", torch.bfloat16)


@pytest.mark.parametrize("per_head", [True, False])
def test_quantization_error_is_e4m3s_half_ulp(per_head):
    """Round to nearest keeps every value within 2^-4 relative (3 mantissa bits) inside
    the normal range; over a Gaussian tensor the norm-wise error is about 2-3%."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 4, 64, generator=gen) * torch.tensor([0.1, 1.0, 5.0, 40.0])[:, None]
    amax = x.abs().amax(dim=(0, 2)) if per_head else x.abs().amax().reshape(1)
    scale = scales_from_amax(amax)
    roundtrip = dequantize_fp8(quantize_fp8(x, scale), scale, torch.float32)
    normal = x.abs() >= 2**-6 * scale[:, None]
    assert ((roundtrip - x).abs() <= x.abs() * 2**-4)[normal].all()
    assert relative_error(roundtrip, x) < 0.04


def test_pool_takes_what_the_profile_leaves():
    gib = 2**30
    # 80 GiB card at 90%: 72 GiB, minus 17 GiB resident and a 3 GiB profile peak.
    assert kv_blocks_for_memory(80 * gib, 0.9, 17 * gib, 3 * gib, 2 * 2**20) == 52 * 512
    with pytest.raises(ValueError, match="no room for a KV cache"):
        kv_blocks_for_memory(80 * gib, 0.9, 70 * gib, 3 * gib, 2 * 2**20)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        kv_blocks_for_memory(80 * gib, 1.5, 0, 0, 1)


def test_profile_batch_is_the_largest_step_the_scheduler_can_build():
    batch = profile_batch(max_num_batched_tokens=2048, max_num_seqs=256, block_size=16)
    assert len(batch) == 256 and sum(len(s.token_ids) for s in batch) == 2048
    blocks = [b for s in batch for b in s.block_table]
    assert len(blocks) == len(set(blocks)) == 256  # 8 tokens each: one block per sequence
    uneven = profile_batch(max_num_batched_tokens=100, max_num_seqs=3, block_size=16)
    assert [len(s.token_ids) for s in uneven] == [34, 33, 33]
    assert [s.block_table for s in uneven] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures CUDA memory: no GPU")
def test_profiled_pool_fits_on_the_device():
    from infleet.engine.gpu_memory import kv_blocks_from_profile
    from tests.engine.kernel_cases import tiny_loaded

    loaded = tiny_loaded()
    blocks = kv_blocks_from_profile(
        loaded, block_size=16, kv_cache_dtype="auto", attention_backend="reference",
        max_num_batched_tokens=512, max_num_seqs=32, gpu_memory_utilization=0.5,
    )  # fmt: skip
    per_block = ModelRunner.kv_bytes_per_block(loaded.config, 16, loaded.dtype)
    _, total = torch.cuda.mem_get_info()
    assert 0 < blocks * per_block < 0.5 * total
    ModelRunner(loaded, num_blocks=blocks, attention_backend="reference")  # allocates
