"""Sizing the KV pool on CUDA from a measured warm-up peak, not a guessed fraction.

Before the pool exists, one forward of the largest step the scheduler can build
(`max_num_batched_tokens` tokens over up to `max_num_seqs` sequences, logits included)
runs on a throwaway minimal cache; its peak allocation beyond the weights is the
activation memory every later step needs at most. The pool gets what is left of
`gpu_memory_utilization` of the device after that peak and everything already resident
(weights, CUDA context, library workspaces, as `cudaMemGetInfo` reports them). The rest
(1 - utilization) is headroom for the decode CUDA graphs' shared pool, which is
captured after the KV pool and holds a decode batch's activations (far below a full
prefill step's). Admission and preemption then keep every step inside the pool.
"""

from __future__ import annotations

import torch

from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import LoadedModel


def kv_blocks_for_memory(
    total_bytes: int,
    utilization: float,
    resident_bytes: int,
    peak_activation_bytes: int,
    bytes_per_block: int,
) -> int:
    """Blocks that fit in `utilization * total` after resident memory and the peak."""
    if not 0 < utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {utilization}")
    budget = int(total_bytes * utilization) - resident_bytes - peak_activation_bytes
    if budget < bytes_per_block:
        raise ValueError(
            f"no room for a KV cache: {utilization:.0%} of {total_bytes / 2**30:.1f} GiB, "
            f"minus {resident_bytes / 2**30:.2f} GiB resident and "
            f"{peak_activation_bytes / 2**30:.2f} GiB peak activations, leaves "
            f"{max(budget, 0) / 2**20:.0f} MiB (one block is {bytes_per_block / 2**20:.1f} MiB)"
        )
    return budget // bytes_per_block


def profile_batch(
    max_num_batched_tokens: int, max_num_seqs: int, block_size: int
) -> list[SeqSlice]:
    """The largest step the scheduler can form: the token budget spread over as many
    sequences as may run (each one's logits are computed), on consecutive blocks."""
    num_seqs = max(1, min(max_num_seqs, max_num_batched_tokens))
    base, extra = divmod(max_num_batched_tokens, num_seqs)
    batch, next_block = [], 0
    for i in range(num_seqs):
        length = base + (i < extra)
        blocks = -(-length // block_size)
        batch.append(SeqSlice([0] * length, 0, list(range(next_block, next_block + blocks))))
        next_block += blocks
    return batch


def kv_blocks_from_profile(
    loaded: LoadedModel,
    *,
    block_size: int,
    kv_cache_dtype: str,
    attention_backend: str,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    gpu_memory_utilization: float = 0.90,
) -> int:
    """Run the profile step on CUDA and return how many KV blocks the pool can hold."""
    if loaded.device.type != "cuda":
        raise ValueError("KV pool profiling measures CUDA memory; on CPU give --kv-cache-memory")
    batch = profile_batch(max_num_batched_tokens, max_num_seqs, block_size)
    blocks = sum(len(s.block_table) for s in batch)
    runner = ModelRunner(
        loaded, num_blocks=blocks, block_size=block_size, kv_cache_dtype=kv_cache_dtype,
        attention_backend=attention_backend, cuda_graph_max_batch=0,
    )  # fmt: skip
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    runner.forward(batch)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    bytes_per_block = ModelRunner.kv_bytes_per_block(loaded.config, block_size, runner.kv_dtype)
    del runner
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    # The model's layers still point at the throwaway cache until the real runner
    # replaces it: that memory is not resident for the real pool.
    resident = total - free - blocks * bytes_per_block
    return kv_blocks_for_memory(total, gpu_memory_utilization, resident, peak, bytes_per_block)
