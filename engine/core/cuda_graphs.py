"""Decode steps replayed from CUDA graphs, one graph per bucketed batch size.

A decode step of a small model is hundreds of short kernels; launching them one by one
from Python costs more than running them (gpt-fast's lesson). Each bucket's forward is
captured once into a graph over static input buffers; a step copies its inputs into
those buffers and replays the smallest graph that fits. All graphs share one memory
pool: they are captured largest first and never run concurrently, so the smaller ones
reuse the largest one's activation memory.

Rows past the real batch are padding: slot -1 (the KV write skips them) and context
length 0 (attention reads no keys and returns zeros), so they never touch a real
sequence's cache. Capture needs an attention backend that neither syncs with the host
nor allocates by data-dependent size: triton or flash-attn, not the torch backends.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch
from torch import nn

from infleet.engine.attention.context import AttentionContext, reset_context, set_context


def graph_batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, 8, then every 16 up to `max_batch` (which is always included)."""
    sizes = {b for b in (1, 2, 4, 8) if b < max_batch} | set(range(16, max_batch, 16))
    return sorted(sizes | {max_batch})


def bucket_for(batch: int, sizes: list[int]) -> int | None:
    """The smallest captured size that holds `batch` rows, or None if none does."""
    i = bisect.bisect_left(sizes, batch)
    return sizes[i] if i < len(sizes) else None


@dataclass(slots=True)
class StaticDecodeInputs:
    """The buffers every graph reads; a step's inputs are copied into them."""

    input_ids: torch.Tensor  # int64 [max_batch]
    positions: torch.Tensor  # int64 [max_batch]
    slot_mapping: torch.Tensor  # int64 [max_batch]
    context_lens: torch.Tensor  # int32 [max_batch]
    block_tables: torch.Tensor  # int32 [max_batch, max_blocks_per_seq]
    cu_seqlens_q: torch.Tensor  # int32 [max_batch + 1]: 0, 1, 2, ... (one query per row)

    @classmethod
    def allocate(
        cls, max_batch: int, max_blocks_per_seq: int, device: torch.device
    ) -> StaticDecodeInputs:
        def zeros(*shape: int, dtype: torch.dtype) -> torch.Tensor:
            return torch.zeros(*shape, dtype=dtype, device=device)

        inputs = cls(
            zeros(max_batch, dtype=torch.int64),
            zeros(max_batch, dtype=torch.int64),
            zeros(max_batch, dtype=torch.int64),
            zeros(max_batch, dtype=torch.int32),
            zeros(max_batch, max_blocks_per_seq, dtype=torch.int32),
            torch.arange(max_batch + 1, dtype=torch.int32, device=device),
        )
        inputs.pad(0, max_batch)
        return inputs

    def pad(self, start: int, stop: int) -> None:
        """Rows [start, stop) become padding: no KV slot, no context."""
        self.input_ids[start:stop] = 0
        self.positions[start:stop] = 0
        self.slot_mapping[start:stop] = -1
        self.context_lens[start:stop] = 0

    def fill(self, input_ids: torch.Tensor, ctx: AttentionContext, bucket: int) -> None:
        """Copy a decode batch (one token per sequence) into rows [0, B), pad to `bucket`."""
        rows = input_ids.shape[0]
        width = ctx.block_tables.shape[1]
        if width > self.block_tables.shape[1]:
            raise ValueError(f"block tables {width} wide; graphs were captured for "
                             f"{self.block_tables.shape[1]}")  # fmt: skip
        self.input_ids[:rows].copy_(input_ids, non_blocking=True)
        self.positions[:rows].copy_(ctx.positions, non_blocking=True)
        self.slot_mapping[:rows].copy_(ctx.slot_mapping, non_blocking=True)
        self.context_lens[:rows].copy_(ctx.context_lens, non_blocking=True)
        self.block_tables[:rows, :width].copy_(ctx.block_tables, non_blocking=True)
        self.pad(rows, bucket)

    def context(self, bucket: int, block_size: int, max_context_len: int) -> AttentionContext:
        """The attention context a graph of `bucket` rows is captured (and run) with. Host
        lengths say the worst case, so launch shapes (e.g. split-KV) suit any step."""
        return AttentionContext(
            cu_seqlens_q=self.cu_seqlens_q[: bucket + 1],
            context_lens=self.context_lens[:bucket],
            block_tables=self.block_tables[:bucket],
            slot_mapping=self.slot_mapping[:bucket],
            positions=self.positions[:bucket],
            block_size=block_size,
            query_lens_host=[1] * bucket,
            context_lens_host=[max_context_len] * bucket,
        )


class DecodeGraphs:
    """Captures `model(input_ids, positions) -> hidden` for decode batches of every size
    in `graph_batch_sizes(max_batch)`; `run` replays the one that fits."""

    def __init__(
        self,
        model: nn.Module,
        *,
        max_batch: int,
        max_blocks_per_seq: int,
        block_size: int,
        max_context_len: int,
        device: torch.device,
    ) -> None:
        self.model = model
        self.sizes = graph_batch_sizes(max_batch)
        self.block_size = block_size
        self.max_context_len = max_context_len
        self.inputs = StaticDecodeInputs.allocate(max_batch, max_blocks_per_seq, device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}

    def fits(self, batch: int, table_width: int) -> bool:
        """Whether a decode batch of this size and block-table width has a graph."""
        width = self.inputs.block_tables.shape[1]
        return bool(self.graphs) and batch <= self.sizes[-1] and table_width <= width

    @torch.inference_mode()
    def capture(self) -> None:
        pool = None
        for size in reversed(self.sizes):  # largest first: the rest fit in its pool
            ids, pos = self.inputs.input_ids[:size], self.inputs.positions[:size]
            set_context(self.inputs.context(size, self.block_size, self.max_context_len))
            try:
                self.model(ids, pos)  # warm-up outside the graph: kernel compiles, handles
                torch.cuda.synchronize()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    self.outputs[size] = self.model(ids, pos)
            finally:
                reset_context()
            pool = graph.pool() if pool is None else pool
            self.graphs[size] = graph
        torch.cuda.synchronize()

    def run(self, input_ids: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """Hidden states `[B, hidden]` of a decode batch, replayed from a graph."""
        rows = input_ids.shape[0]
        size = bucket_for(rows, self.sizes)
        if size is None or size not in self.graphs:
            raise ValueError(f"no CUDA graph for a batch of {rows} (captured: {self.sizes})")
        self.inputs.fill(input_ids, ctx, size)
        self.graphs[size].replay()
        return self.outputs[size][:rows]
