"""ModelRunner: owns the paged KV pool and turns a list of sequence slices into one forward.

`prepare` is the one place where a step's tensors are built (token ids, positions, slot
mapping, block tables; engine/core/step_inputs.py); the attention context carries them to
every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from infleet.engine.attention import (
    AttentionContext,
    PagedAttention,
    reset_context,
    select_backend,
    set_context,
)
from infleet.engine.core.cuda_graphs import DecodeGraphs
from infleet.engine.core.scheduler import micro_batches
from infleet.engine.core.step_inputs import StepInputBuilder
from infleet.engine.distributed.pipeline import PipelineTrace, run_pipelined
from infleet.engine.distributed.state import kv_head_shard, pp
from infleet.engine.kernels.fp8 import FP8_DTYPE, kv_cache_torch_dtype
from infleet.engine.loader import LoadedModel
from infleet.engine.model_config import ModelConfig
from infleet.lora.apply import set_lora_batch
from infleet.lora.batch import LoRABatch
from infleet.lora.slots import DeviceSlots

LoRAStep = tuple[LoRABatch, DeviceSlots]  # a step's token -> slot layout, and the slots


@dataclass(slots=True)
class SeqSlice:
    token_ids: list[
        int
    ]  # tokens whose K/V this step computes: a prompt chunk, or the last sampled token
    start_pos: int  # tokens of this sequence already in the KV cache (position of token_ids[0])
    block_table: list[int]  # physical block ids covering positions [0, start_pos + len(token_ids))


class ModelRunner:
    def __init__(
        self,
        loaded: LoadedModel,
        *,
        num_blocks: int,
        block_size: int = 16,
        kv_cache_dtype: str = "auto",
        attention_backend: str = "auto",
        cuda_graph_max_batch: int = 256,
    ) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(
                f"need num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}"
            )
        self.model = loaded.model
        self.config = loaded.config
        self.device = loaded.device
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.max_model_len = loaded.config.max_position_embeddings
        self.kv_dtype = kv_cache_torch_dtype(kv_cache_dtype, loaded.dtype)
        self.backend = select_backend(
            attention_backend, loaded.device, block_size=block_size, kv_dtype=self.kv_dtype
        )
        c = loaded.config
        layers = [m for m in self.model.modules() if isinstance(m, PagedAttention)]
        kv_heads = layers[0].num_kv_heads  # this rank's (tensor parallel: a share of them)
        # One allocation for every layer's K and V (pipeline parallel: this stage's layers);
        # zeroed so that padded reads of unused slots are finite (a masked-out NaN would
        # still poison the softmax-weighted sum).
        self.kv_cache = torch.zeros(
            2, len(layers), num_blocks, block_size, kv_heads, c.head_dim,
            dtype=self.kv_dtype, device=self.device,
        )  # fmt: skip
        # fp8 caches: per-layer, per-tensor scales, 1.0 until calibrated (docs/gpu.md).
        self.kv_scales = None
        if self.kv_dtype == FP8_DTYPE:
            self.kv_scales = torch.ones(2, len(layers), 1, device=self.device)
        self.inputs = StepInputBuilder(
            block_size=block_size, num_blocks=num_blocks, max_model_len=self.max_model_len,
            vocab_size=c.vocab_size, device=self.device,
        )  # fmt: skip
        for i, attn in enumerate(layers):
            attn.k_cache, attn.v_cache = self.kv_cache[0, i], self.kv_cache[1, i]
            attn.backend = self.backend
            scales = self.kv_scales
            attn.k_scale, attn.v_scale = (None, None) if scales is None else scales[:, i]
        self.trace = PipelineTrace()  # pipeline parallel: micro-batches in flight (rank 0)
        # Decode steps replay CUDA graphs where the backend never syncs with the host.
        self.graphs = None
        graphable = self.backend.name in ("triton", "flash-attn")
        if self.device.type == "cuda" and graphable and cuda_graph_max_batch > 0:
            self.graphs = DecodeGraphs(
                self.model, max_batch=cuda_graph_max_batch, block_size=block_size,
                max_blocks_per_seq=-(-self.max_model_len // block_size),
                max_context_len=self.max_model_len, device=self.device,
            )  # fmt: skip
            self.graphs.capture()

    @staticmethod
    def kv_bytes_per_block(
        config: ModelConfig, block_size: int, kv_cache_dtype: torch.dtype
    ) -> int:
        element = torch.empty(0, dtype=kv_cache_dtype).element_size()
        _, kv_heads = kv_head_shard(config.num_kv_heads)  # this rank's (tensor parallel)
        layers = len(pp().layers(config.num_layers))  # this stage's (pipeline parallel)
        return 2 * layers * block_size * kv_heads * config.head_dim * element

    def prepare(self, batch: list[SeqSlice]) -> tuple[torch.Tensor, AttentionContext]:
        """Validate a step's slices and build its flat inputs on the device: token ids `[T]`
        and the attention context (docs/contracts.md). A bad slice raises ValueError naming
        what is wrong with the first one. The tensors are views into one buffer per step."""
        return self.inputs.build(batch)

    @torch.inference_mode()
    def copy_block(self, src: int, dst: int) -> None:
        """Copy one block's K/V (every layer): a forked choice's own copy of a partial
        prompt block it is about to write into."""
        self.kv_cache[:, :, dst] = self.kv_cache[:, :, src]

    def forward(self, batch: list[SeqSlice], lora: LoRAStep | None = None) -> torch.Tensor:
        """float32 logits `[len(batch), vocab]` at each slice's last token."""
        input_ids, ctx = self.prepare(batch)
        return self.run(input_ids, ctx, lora=lora)

    @torch.inference_mode()
    def run(
        self,
        input_ids: torch.Tensor,
        ctx: AttentionContext,
        num_logits: list[int] | None = None,
        lora: LoRAStep | None = None,
    ) -> torch.Tensor:
        """The device half of `forward`: logits of prepared inputs. The engine core calls
        it on its device thread, after patching fed-back token ids into `input_ids`.
        `num_logits[i]`: logits at slice i's last that many tokens (speculative
        verification scores every draft position); default one, at the last token.
        `lora`: which tokens run with which adapter slot (engine/core/lora_state.py)."""
        if pp().size > 1:  # every stage runs this; rank 0 gets the logits
            bounds = micro_batches(ctx.query_lens_host, pp().size)
            return run_pipelined(self.model, input_ids, ctx, bounds, self.trace)  # type: ignore[return-value]
        num_seqs = len(ctx.query_lens_host)
        decodes_only = len(input_ids) == num_seqs
        graphs = self.graphs
        # The graphs were captured without adapters: a step with adapter tokens runs eager.
        if (
            lora is None
            and decodes_only
            and graphs is not None
            and graphs.fits(num_seqs, ctx.block_tables.shape[1])
        ):
            return self.model.compute_logits(graphs.run(input_ids, ctx)).float()
        set_context(ctx)
        if lora is not None:
            set_lora_batch(*lora)
        try:
            hidden = self.model(input_ids, ctx.positions)
            last = ctx.cu_seqlens_q[1:].long() - 1
            if num_logits is not None:
                last = _last_positions(ctx.query_lens_host, num_logits, hidden.device)
            return self.model.compute_logits(hidden.index_select(0, last)).float()
        finally:
            set_lora_batch(None)
            reset_context()


def _last_positions(query_lens: list[int], counts: list[int], device: torch.device) -> torch.Tensor:
    """Flat indices of each slice's last counts[i] tokens, in order."""
    rows, end = [], 0
    for n, m in zip(query_lens, counts, strict=True):
        end += n
        rows.extend(range(end - m, end))
    return torch.tensor(rows, device=device)
