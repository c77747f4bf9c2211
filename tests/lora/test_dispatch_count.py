"""Batched for real: the torch ops one step dispatches do not grow with the adapters in it.

A TorchDispatchMode counts every aten op of building the step's LoRABatch and of applying
every adapted linear of a decoder layer, for the same 64 tokens spread over 1 and over 8
adapters (with base-model tokens among them). A per-adapter Python loop would add ops
per adapter and fail this.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from infleet.lora.apply import LinearLoRA, set_lora_batch
from infleet.lora.base_model import BaseModelShape
from infleet.lora.batch import LoRABatch
from infleet.lora.slots import DeviceSlots

SHAPE = BaseModelShape.decoder(
    hidden_size=64, num_layers=1, q_size=64, kv_size=32, intermediate_size=96
)
MAX_LORAS = 8


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def step_ops(token_slots: list[int]) -> Counter[str]:
    slots = DeviceSlots(SHAPE, MAX_LORAS, max_rank=8, dtype=torch.float32)
    for buffer in (*slots.a.values(), *slots.b.values()):
        buffer.normal_()
    hooks = [LinearLoRA(slots, 0, linear.name) for linear in SHAPE.linears]
    inputs = [
        (
            torch.randn(len(token_slots), lin.in_features),
            torch.zeros(len(token_slots), lin.out_features),
        )
        for lin in SHAPE.linears
    ]
    with OpCounter() as counter:
        set_lora_batch(LoRABatch.build(token_slots, MAX_LORAS))
        try:
            for hook, (x, y) in zip(hooks, inputs, strict=True):
                hook.apply(x, y)
        finally:
            set_lora_batch(None)
    lora_rows = [t for t, s in enumerate(token_slots) if s >= 0]
    assert all(y[lora_rows].abs().min() > 0 for _, y in inputs)  # every LoRA row got a delta
    return counter.ops


def test_ops_per_step_same_for_one_and_eight_adapters():
    one = [0 if t % 5 else -1 for t in range(64)]
    eight = [t % 8 if t % 5 else -1 for t in range(64)]
    ops_one, ops_eight = step_ops(one), step_ops(eight)
    # One shrink per linear (4), one expand per packed part (3 + 1 + 2 + 1).
    assert ops_one["aten._grouped_mm"] == 4 + 7
    assert ops_one == ops_eight
