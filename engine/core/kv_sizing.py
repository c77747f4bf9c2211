"""How many KV blocks the pool gets, and the context limit that pool can honour."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from infleet.engine.args import EngineArgs
from infleet.engine.core.runner import ModelRunner
from infleet.engine.kernels.fp8 import kv_cache_torch_dtype
from infleet.engine.loader import LoadedModel

log = logging.getLogger("infleet.engine")

CPU_KV_MEMORY = 1 << 30


@dataclass(slots=True)
class KVPool:
    num_blocks: int
    bytes_per_block: int
    max_model_len: int


def resolve_kv_pool(args: EngineArgs, loaded: LoadedModel) -> KVPool:
    """Raises ValueError (naming the flag) when the settings cannot work together."""
    dtype = kv_cache_torch_dtype(args.kv_cache_dtype, loaded.dtype)
    per_block = ModelRunner.kv_bytes_per_block(loaded.config, args.block_size, dtype)
    if args.num_kv_blocks is not None:
        num_blocks = args.num_kv_blocks
    elif args.kv_cache_memory is None and loaded.device.type == "cuda":
        # What is left after weights and the peak of the largest step (measured).
        from infleet.engine.gpu_memory import kv_blocks_from_profile

        num_blocks = kv_blocks_from_profile(
            loaded,
            block_size=args.block_size,
            kv_cache_dtype=args.kv_cache_dtype,
            attention_backend=args.attention_backend,
            max_num_batched_tokens=args.max_num_batched_tokens,
            max_num_seqs=args.max_num_seqs,
            gpu_memory_utilization=args.gpu_memory_utilization,
        )
        if num_blocks < 1:
            raise ValueError(
                "no GPU memory is left for the KV cache after the weights and activations"
            )
    else:
        memory = args.kv_cache_memory or CPU_KV_MEMORY
        num_blocks = memory // per_block
        if num_blocks < 1:
            raise ValueError(
                f"--kv-cache-memory {memory} bytes holds no KV block ({per_block} bytes each)"
            )
    capacity = num_blocks * args.block_size
    model_max = loaded.config.max_position_embeddings
    if args.max_model_len is not None:
        if args.max_model_len > model_max:
            raise ValueError(
                f"--max-model-len {args.max_model_len} exceeds the model's {model_max}"
            )
        if args.max_model_len > capacity:
            raise ValueError(
                f"--max-model-len {args.max_model_len} does not fit the KV pool ({capacity} tokens); "
                "raise --kv-cache-memory or lower --max-model-len"
            )
        max_len = args.max_model_len
    else:
        max_len = min(model_max, capacity)
        if max_len < model_max:
            log.warning(
                "context limited to %d tokens by the KV pool (model allows %d)", max_len, model_max
            )
    return KVPool(num_blocks, per_block, max_len)
