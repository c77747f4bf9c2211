"""This process's tensor-parallel place and the collectives the layers call.

Model code asks `tp()` at construction time which shard to hold (as vLLM's
`get_tensor_model_parallel_rank()`): the one global keeps rank arguments out of every
constructor. With one rank every collective is the identity and nothing imports
torch.distributed's process group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True, slots=True)
class TPState:
    rank: int = 0
    size: int = 1
    expert_parallel: bool = False  # experts spread over the TP ranks instead of split


@dataclass(frozen=True, slots=True)
class PPState:
    """This process's pipeline stage: ranks are stages in order (TP x PP is refused)."""

    rank: int = 0
    size: int = 1

    @property
    def first(self) -> bool:
        return self.rank == 0

    @property
    def last(self) -> bool:
        return self.rank == self.size - 1

    def layers(self, num_layers: int) -> range:
        """The decoder layers this stage holds: an even, contiguous share (the degree
        must divide the layer count; engine/distributed/degrees.py)."""
        per = num_layers // self.size
        return range(self.rank * per, (self.rank + 1) * per)


_state = TPState()
_pp = PPState()


def tp() -> TPState:
    return _state


def set_tp(state: TPState) -> None:
    global _state
    _state = state


def pp() -> PPState:
    return _pp


def set_pp(state: PPState) -> None:
    global _pp
    _pp = state


def init_process_group(
    rank: int, world_size: int, master_addr: str, master_port: int, device: torch.device
) -> None:
    """Join the group: gloo on CPU, NCCL on CUDA (rendezvous over TCP at master)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://{master_addr}:{master_port}",
        rank=rank,
        world_size=world_size,
    )


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum over the TP ranks, in place."""
    if _state.size > 1:
        dist.all_reduce(x)
    return x


def all_gather_last(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `x` along the last dim, in rank order."""
    if _state.size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(_state.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=-1)


def kv_head_shard(num_kv_heads: int) -> tuple[int, int]:
    """(first KV head, KV heads) this rank holds: a slice of them when they divide by TP,
    else one head replicated over TP/num_kv_heads ranks."""
    size, rank = _state.size, _state.rank
    if num_kv_heads >= size:
        per = num_kv_heads // size
        return rank * per, per
    return rank * num_kv_heads // size, 1
