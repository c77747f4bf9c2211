"""One decoder-only transformer for Llama, Mistral, Qwen2, Qwen3 and their MoE siblings
(Mixtral, Qwen2-MoE, Qwen3-MoE).

The architectures differ only in fields of ModelConfig (q/k/v/o biases, per-head q/k
RMSNorm, sliding windows, rope scaling, tied embeddings, which layers are sparse), so
there is one implementation.
Module names follow the transformers checkpoints, except that q/k/v and gate/up are
packed into one matmul each (see `weights.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from infleet.engine.attention import PagedAttention
from infleet.engine.distributed.state import all_gather_last, kv_head_shard, pp, tp
from infleet.engine.layers.embedding import Embedding
from infleet.engine.layers.linear import Linear
from infleet.engine.layers.norm import RMSNorm
from infleet.engine.layers.rotary import RotaryEmbedding
from infleet.engine.model_config import ModelConfig
from infleet.engine.models.moe_block import SparseMoeBlock


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, rotary: RotaryEmbedding, layer: int) -> None:
        super().__init__()
        c, t = config, tp()
        # Tensor parallel: this rank's query heads, and its KV heads (a slice of them, or
        # one replicated head when there are fewer KV heads than ranks).
        heads = c.num_heads // t.size
        first_kv, kv_heads = kv_head_shard(c.num_kv_heads)
        kv_part = (first_kv // kv_heads, c.num_kv_heads // kv_heads)
        self.q_size, self.kv_size = heads * c.head_dim, kv_heads * c.head_dim
        self.head_dim = c.head_dim
        full_q, full_kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
        self.qkv_proj = Linear(
            c.hidden_size, [full_q, full_kv, full_kv], bias=c.qkv_bias, split="output",
            tp_rank=t.rank, tp_size=t.size, part_shards=[(t.rank, t.size), kv_part, kv_part],
        )  # fmt: skip
        self.o_proj = Linear(
            full_q, c.hidden_size, bias=c.o_bias, split="input", tp_rank=t.rank, tp_size=t.size
        )
        self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps) if c.qk_norm else None
        self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps) if c.qk_norm else None
        self.rotary = rotary  # one module shared by every layer: a single cos/sin table
        self.attn = PagedAttention(heads, kv_heads, c.head_dim, c.sliding_windows[layer])

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        q, k, v = self.qkv_proj(x).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.reshape(t, -1, self.head_dim)
        k = k.reshape(t, -1, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.rotary.rotate_qk(positions, q, k)
        return self.o_proj(self.attn(q.reshape(t, -1), k.reshape(t, -1), v.contiguous()))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig, size: int | None = None) -> None:
        super().__init__()
        size, t = size or config.intermediate_size, tp()
        split = dict(tp_rank=t.rank, tp_size=t.size)
        self.gate_up_proj = Linear(
            config.hidden_size, [size, size], bias=config.mlp_bias, split="output", **split
        )
        self.down_proj = Linear(
            size, config.hidden_size, bias=config.mlp_bias, split="input", **split
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:  # one fused kernel (engine/kernels/silu_mul.py), same rounding
            from infleet.engine.kernels.silu_mul import silu_mul

            return self.down_proj(silu_mul(self.gate_up_proj(x)))
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, rotary: RotaryEmbedding, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = SelfAttention(config, rotary, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        sparse = config.moe is not None and config.moe.sparse_layers[layer]
        self.mlp = SparseMoeBlock(config, MLP) if sparse else MLP(config)

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: the previous layer's output; residual: the running sum before it (None at the
        first layer). Each norm adds the residual in (fused on CUDA)."""
        if residual is None:
            residual, x = x, self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x, residual = self.post_attention_layernorm(self.self_attn(positions, x), residual)
        return self.mlp(x), residual


class DecoderStack(nn.Module):
    """Pipeline parallel: a stage builds only its layers (the others stay empty slots, so
    checkpoint names keep their indices); the first stage holds the embedding, the last
    the final norm (and the LM head, CausalLM)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        stage = pp()
        self.stage_layers = stage.layers(config.num_layers)
        embeds = stage.first or (stage.last and config.tie_word_embeddings)
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size) if embeds else None
        self.rotary = RotaryEmbedding(
            config.head_dim,
            config.max_position_embeddings,
            config.rope_theta,
            config.rope_scaling,
        )
        self.layers = nn.ModuleList(
            DecoderLayer(config, self.rotary, i) if i in self.stage_layers else nn.Identity()
            for i in range(config.num_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps) if stage.last else None


class CausalLM(nn.Module):
    """forward(input_ids [T], positions [T]) -> hidden [T, hidden]; compute_logits(hidden)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DecoderStack(config)
        self.lm_head = None
        if not config.tie_word_embeddings and pp().last:  # vocabulary-parallel, as the embedding
            self.lm_head = Embedding(config.vocab_size, config.hidden_size)

    def holds(self, name: str) -> bool:
        """Whether this pipeline stage holds checkpoint weight `name` (every name at PP=1)."""
        stack = self.model
        if name.startswith("model.layers."):
            return int(name.split(".")[2]) in stack.stage_layers
        if name.startswith("model.embed_tokens."):
            return stack.embed_tokens is not None
        if name.startswith("model.norm."):
            return stack.norm is not None
        if name.startswith("lm_head."):
            return self.lm_head is not None
        return True

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x, residual = self.forward_layers(positions, self.model.embed_tokens(input_ids), None)
        return self.model.norm(x, residual)[0]

    def forward_layers(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """This stage's layers: (hidden, residual) in, (hidden, residual) out."""
        for i in self.model.stage_layers:
            x, residual = self.model.layers[i](positions, x, residual)
        assert residual is not None  # every stage holds at least one layer
        return x, residual

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        head = self.model.embed_tokens if self.lm_head is None else self.lm_head
        logits = F.linear(hidden, head.weight)
        if head.tp_size == 1:
            return logits
        return all_gather_last(logits)[..., : self.config.vocab_size]
