"""Fresh random paged-attention inputs for the kernel tests (tests/engine/test_kernel_*).

On a machine without CUDA the kernels run in Triton's interpreter on CPU tensors
(infleet.engine.kernels switches it on), so shapes stay small but cover what matters:
several blocks per sequence, a partial last block, blocks scattered in the pool, GQA,
decodes next to prefill chunks that have cached context before them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from infleet.engine.attention import PagedAttention
from infleet.engine.kernels.fp8 import FP8_DTYPE, quantize_fp8
from infleet.engine.loader import LoadedModel
from infleet.engine.model_config import ModelConfig
from infleet.engine.models import build_model
from infleet.engine.runner import ModelRunner, SeqSlice

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(slots=True)
class PagedBatch:
    q: torch.Tensor  # [T, Hq, D]
    k_cache: torch.Tensor  # [num_blocks, page, Hkv, D]
    v_cache: torch.Tensor
    cu_seqlens_q: torch.Tensor
    context_lens: torch.Tensor
    block_tables: torch.Tensor
    k_scale: torch.Tensor | None
    v_scale: torch.Tensor | None


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (METHOD.md); NaN never passes a `<` bound."""
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm()).item()


def paged_batch(
    q_lens: list[int],
    context_lens: list[int],
    *,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
    kv_dtype: torch.dtype | None = None,
    page: int = 16,
    per_head_scales: bool = True,
    seed: int = 0,
) -> PagedBatch:
    gen = torch.Generator().manual_seed(seed)
    kv_dtype = kv_dtype or dtype
    blocks_needed = [-(-n // page) for n in context_lens]
    num_blocks = sum(blocks_needed) + 3  # spare blocks hold garbage nobody may read
    order = torch.randperm(num_blocks, generator=gen)  # scattered, not in sequence order
    tables = torch.full((len(q_lens), max(blocks_needed) + 1), -1, dtype=torch.int32)
    used = 0
    for s, n in enumerate(blocks_needed):
        tables[s, :n] = order[used : used + n]
        used += n
    shape = (num_blocks, page, num_kv_heads, head_dim)
    k_scale = v_scale = None
    k = torch.randn(shape, generator=gen)
    v = torch.randn(shape, generator=gen)
    if kv_dtype == FP8_DTYPE:
        heads = num_kv_heads if per_head_scales else 1
        k_scale = torch.rand(heads, generator=gen) + 0.25
        v_scale = torch.rand(heads, generator=gen) + 0.25
        k_cache = quantize_fp8(k.flatten(0, 1) * 3, k_scale).view(shape)
        v_cache = quantize_fp8(v.flatten(0, 1) * 3, v_scale).view(shape)
        k_scale, v_scale = k_scale.to(DEVICE), v_scale.to(DEVICE)
    else:
        k_cache, v_cache = k.to(kv_dtype), v.to(kv_dtype)
    cu = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(sum(q_lens), num_q_heads, head_dim, generator=gen).to(dtype)
    return PagedBatch(
        q.to(DEVICE),
        k_cache.to(DEVICE),
        v_cache.to(DEVICE),
        cu.to(DEVICE),
        torch.tensor(context_lens, dtype=torch.int32, device=DEVICE),
        tables.to(DEVICE),
        k_scale,
        v_scale,
    )


def tiny_loaded(dtype: torch.dtype = torch.float32, seed: int = 0, **config) -> LoadedModel:
    """A 2-layer GQA Llama with random weights on DEVICE (no tokenizer: runner-level only)."""
    fields = dict(
        architecture="llama", vocab_size=128, hidden_size=64, intermediate_size=96,
        num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_theta=10000.0,
    )  # fmt: skip
    cfg = ModelConfig(**{**fields, **config})
    model = build_model(cfg, DEVICE, dtype)
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        values = torch.randn(param.shape, generator=gen)
        values = 1 + 0.1 * values if name.endswith("norm.weight") else 0.15 * values
        param.data.copy_(values)
    return LoadedModel(model, cfg, None, "tiny", DEVICE, dtype)


def use_backend(runner: ModelRunner, backend: object) -> None:
    """Point every attention layer of the runner's model at `backend`."""
    for module in runner.model.modules():
        if isinstance(module, PagedAttention):
            module.backend = backend


def greedy_decode(
    runner: ModelRunner,
    prompts: list[list[int]],
    steps: int,
    decode: Callable[[list[SeqSlice]], torch.Tensor] | None = None,
) -> list[list[int]]:
    """Prefill all prompts in one mixed step, then decode them together greedily (through
    `decode(batch) -> logits`, default `runner.forward`); each sequence gets its own
    consecutive blocks."""
    decode = decode or runner.forward
    bs = runner.block_size
    per_seq = -(-(max(map(len, prompts)) + steps) // bs)
    tables = [list(range(i * per_seq, (i + 1) * per_seq)) for i in range(len(prompts))]
    out: list[list[int]] = [[] for _ in prompts]
    logits = runner.forward([SeqSlice(p, 0, t) for p, t in zip(prompts, tables, strict=True)])
    for step in range(steps):
        for seq, token in zip(out, logits.argmax(-1).tolist(), strict=True):
            seq.append(token)
        if step + 1 < steps:
            batch = [
                SeqSlice([o[-1]], len(p) + len(o) - 1, t)
                for p, o, t in zip(prompts, out, tables, strict=True)
            ]
            logits = decode(batch)
    return out
