"""The Triton attention backend: our own paged kernels, for CUDA (engine/kernels).

Per layer and step: one KV-write launch (quantizing to e4m3 when the cache is fp8), one
paged-attention launch over the whole flat batch (decodes and prefill chunks together),
plus a merge launch when decodes are split over the keys. Nothing here syncs with the
host or allocates by data-dependent size, so a decode step can be captured in a CUDA
graph (engine/core/cuda_graphs.py).
"""

from __future__ import annotations

import functools

import torch

from infleet.engine.attention.context import get_context
from infleet.engine.kernels.kv_write import write_kv
from infleet.engine.kernels.paged_attention import choose_num_splits, paged_attention

# Without CUDA (the CPU interpreter, tests) split-KV is still exercised at this width.
_CPU_SMS = 4


@functools.cache
def num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return _CPU_SMS
    return torch.cuda.get_device_properties(device).multi_processor_count


class TritonBackend:
    name = "triton"

    def forward(
        self,
        q: torch.Tensor,  # [T, H, D]
        k: torch.Tensor,  # [T, Hkv, D]
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        *,
        scale: float,
        sliding_window: int | None,
        k_scale: torch.Tensor | None = None,  # fp8 caches: float32 [1] or [Hkv]
        v_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ctx = get_context()
        write_kv(k, v, k_cache, v_cache, ctx.slot_mapping, k_scale, v_scale)
        num_splits = 1
        if q.shape[0] == ctx.num_seqs:  # decode only: prefill tiles fill the GPU, decodes may not
            programs = ctx.num_seqs * k_cache.shape[2]
            longest = max(ctx.context_lens_host)
            num_splits = choose_num_splits(programs, longest, num_sms(q.device))
        return paged_attention(
            q, k_cache, v_cache, ctx.cu_seqlens_q, ctx.context_lens, ctx.block_tables,
            scale=scale, k_scale=k_scale, v_scale=v_scale, sliding_window=sliding_window,
            num_splits=num_splits,
        )  # fmt: skip
