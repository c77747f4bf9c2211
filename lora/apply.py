"""The per-token adapter hook the engine's linear layer calls, and the step's LoRABatch.

The runner sets the step's LoRABatch before the forward (None when no token uses an
adapter) and clears it after, like the attention context: model code never sees which
token belongs to which adapter. Each adapted linear of each decoder layer holds one
`LinearLoRA`; its call adds the batch's LoRA deltas to the base output in place, on CUDA
through the Triton kernels, elsewhere through the torch path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from infleet.lora.batch import LoRABatch
from infleet.lora.punica_torch import add_lora_torch
from infleet.lora.slots import DeviceSlots

_current: LoRABatch | None = None


def set_lora_batch(batch: LoRABatch | None) -> None:
    global _current
    _current = batch


def get_lora_batch() -> LoRABatch | None:
    return _current


def add_lora(
    y: torch.Tensor,
    x: torch.Tensor,
    batch: LoRABatch,
    a: torch.Tensor,
    b: torch.Tensor,
    part_sizes: Sequence[int],
) -> None:
    """y[T, out] += each token's adapter delta; base-model tokens' rows are not touched."""
    if y.is_cuda:
        from infleet.lora.punica_triton import add_lora_triton

        add_lora_triton(y, x, batch, a, b, part_sizes)
    else:
        add_lora_torch(y, x, batch, a, b, part_sizes)


class LinearLoRA:
    """The adapter hook of one engine linear (`name`) in decoder layer `layer`."""

    def __init__(self, slots: DeviceSlots, layer: int, name: str) -> None:
        self.a, self.b, linear = slots.layer(layer, name)
        self.part_sizes = tuple(size for _, size in linear.parts)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        batch = _current
        if batch is not None:
            add_lora(y, x, batch, self.a, self.b, self.part_sizes)
        return y
