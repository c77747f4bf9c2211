"""Vocabulary-parallel token embedding (also the untied LM head): each tensor-parallel
rank holds ceil(vocab / TP) consecutive rows, the last rank's tail padded with zeros.

Lookup: a rank embeds the ids in its range, zeros the rest, and the all-reduce sums the
one non-zero row per token. LM head: each rank's logits over its rows are gathered in
rank order and the padding cut off (`CausalLM.compute_logits`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from infleet.engine.distributed.state import all_reduce, tp


class Embedding(nn.Module):
    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        state = tp()
        self.num_embeddings, self.dim, self.tp_size = num_embeddings, dim, state.size
        self.rows = -(-num_embeddings // state.size)
        self.first = state.rank * self.rows
        self.weight = nn.Parameter(torch.empty(self.rows, dim), requires_grad=False)
        self.weight.weight_loader = self.weight_loader
        self.weight.num_shards = 1

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard: int = 0) -> None:
        if loaded.shape != (self.num_embeddings, self.dim):
            raise ValueError(
                f"shape {tuple(loaded.shape)} where {(self.num_embeddings, self.dim)} expected"
            )
        mine = loaded[self.first : self.first + self.rows]
        param.data[: len(mine)].copy_(mine)
        param.data[len(mine) :].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return F.embedding(ids, self.weight)
        local = ids - self.first
        outside = (local < 0) | (local >= self.rows)
        out = F.embedding(local.masked_fill(outside, 0), self.weight)
        return all_reduce(out.masked_fill_(outside.unsqueeze(-1), 0))
