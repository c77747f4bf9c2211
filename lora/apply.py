"""The per-token adapter hook the engine's linear layer calls, and the step's LoRABatch.

The runner sets the step's LoRABatch and the engine's DeviceSlots before the forward
(nothing when no token uses an adapter) and clears them after, like the attention
context: model code never sees which token belongs to which adapter. Each adapted linear
of each decoder layer holds one `LinearLoRA`; its `apply` adds the batch's LoRA deltas to
the base output in place (base tokens' rows untouched), on CUDA through the Triton
kernels, elsewhere through the torch path.

The step's state is thread-local and names its slots, so two engines in one process (the
tests') may even share one model object: each device thread runs its own forward with
its own adapters.
"""

from __future__ import annotations

import threading

import torch

from infleet.lora.batch import LoRABatch
from infleet.lora.punica_torch import add_lora_torch
from infleet.lora.slots import DeviceSlots

_step = threading.local()


def set_lora_batch(batch: LoRABatch | None, slots: DeviceSlots | None = None) -> None:
    """This thread's next forwards apply `batch` with the adapters in `slots` (None: the
    slots each hook was made with)."""
    _step.state = None if batch is None else (batch, slots)


class LinearLoRA:
    """The adapter hook of one engine linear (`name`) in decoder layer `layer`."""

    def __init__(self, slots: DeviceSlots, layer: int, name: str) -> None:
        self.slots, self.layer, self.name = slots, layer, name
        linear = slots.base.linear(name)
        self.part_sizes = tuple(size for _, size in linear.parts)
        self._meta = [list(linear.part_offsets), list(self.part_sizes)]
        self._part_meta: torch.Tensor | None = None  # _meta on the device, for Triton

    def apply(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adds this step's deltas to y (engine/layers/linear.py's adapter hook)."""
        state = getattr(_step, "state", None)
        if state is None:
            return y
        batch, slots = state
        a, b, _ = (slots or self.slots).layer(self.layer, self.name)
        if a.is_cuda:
            from infleet.lora.punica_triton import add_lora_triton

            if self._part_meta is None or self._part_meta.device != a.device:
                self._part_meta = torch.tensor(self._meta, dtype=torch.int32, device=a.device)
            add_lora_triton(y, x, batch, a, b, self.part_sizes, part_meta=self._part_meta)
        else:
            add_lora_torch(y, x, batch, a, b, self.part_sizes)
        return y
