"""Fresh random paged-attention inputs for the kernel tests (tests/engine/test_kernel_*).

On a machine without CUDA the kernels run in Triton's interpreter on CPU tensors
(infleet.engine.kernels switches it on), so shapes stay small but cover what matters:
several blocks per sequence, a partial last block, blocks scattered in the pool, GQA,
decodes next to prefill chunks that have cached context before them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from infleet.engine.attention import PagedAttention
from infleet.engine.bench.gpu_kernels import PagedBatch
from infleet.engine.bench.gpu_kernels import paged_batch as random_paged_batch
from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import LoadedModel
from infleet.engine.model_config import ModelConfig
from infleet.engine.models import build_model

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (METHOD.md); NaN never passes a `<` bound."""
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm()).item()


def paged_batch(*args, **kwargs) -> PagedBatch:
    """engine/bench/gpu_kernels.py's random paged batch, on DEVICE."""
    return random_paged_batch(*args, device=DEVICE, **kwargs)


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
