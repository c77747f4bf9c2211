"""The per-token adapter hook the engine's linear layer calls, and the step's LoRABatch.

The runner sets the step's LoRABatch before the forward (None when no token uses an
adapter) and clears it after, like the attention context: model code never sees which
token belongs to which adapter. Each adapted linear of each decoder layer holds one
`LinearLoRA`; its `apply` adds the batch's LoRA deltas to the base output in place (base
tokens' rows untouched), on CUDA through the Triton kernels, elsewhere through the torch
path.
"""

from __future__ import annotations

import functools

import torch

from infleet.lora.batch import LoRABatch
from infleet.lora.punica_torch import add_lora_torch
from infleet.lora.slots import DeviceSlots

_current: LoRABatch | None = None


def set_lora_batch(batch: LoRABatch | None) -> None:
    global _current
    _current = batch


class LinearLoRA:
    """The adapter hook of one engine linear (`name`) in decoder layer `layer`."""

    def __init__(self, slots: DeviceSlots, layer: int, name: str) -> None:
        self.a, self.b, linear = slots.layer(layer, name)
        self.part_sizes = tuple(size for _, size in linear.parts)
        self._add = add_lora_torch
        if self.a.is_cuda:
            from infleet.lora.punica_triton import add_lora_triton

            meta = [list(linear.part_offsets), list(self.part_sizes)]
            part_meta = torch.tensor(meta, dtype=torch.int32, device=self.a.device)
            self._add = functools.partial(add_lora_triton, part_meta=part_meta)

    def apply(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adds this step's deltas to y (engine/layers/linear.py's adapter hook)."""
        batch = _current
        if batch is not None:
            self._add(y, x, batch, self.a, self.b, self.part_sizes)
        return y
