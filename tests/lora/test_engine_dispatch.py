"""Batched for real, through the engine's forward: the torch ops one step of a tiny Llama
dispatches are the same with its 48 tokens spread over 1 and over 8 adapters."""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from infleet.engine.core.lora_state import EngineLoRA
from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import load_model
from tests.engine.tiny_models import build_checkpoint


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def test_forward_ops_same_for_one_and_eight_adapters(tmp_path):
    loaded = load_model(str(build_checkpoint(tmp_path, "llama")), device="cpu", dtype="float32")
    lora = EngineLoRA(
        loaded.model, loaded.config, max_loras=8, max_cpu_loras=8, max_rank=8,
        dtype=torch.float32, device=torch.device("cpu"),
    )  # fmt: skip
    for buffer in (*lora.slots.a.values(), *lora.slots.b.values()):
        buffer.normal_(0, 0.1)
    runner = ModelRunner(loaded, num_blocks=64, block_size=4, attention_backend="sdpa")
    # Eight sequences of 6 tokens (prefills); the last one runs on the base model.
    slices = [SeqSlice(list(range(3 + i, 9 + i)), 0, [2 * i, 2 * i + 1]) for i in range(8)]
    lens = [6] * 8

    def step(slots: list[int]) -> tuple[Counter[str], torch.Tensor]:
        with OpCounter() as counter:
            logits = runner.forward(slices, lora.batch(slots, lens))
        return counter.ops, logits

    base_ops, base = step([-1] * 8)
    one_ops, one = step([0] * 7 + [-1])
    eight_ops, eight = step([*range(7), -1])
    assert one_ops == eight_ops
    assert one_ops["aten._grouped_mm"] > 0 and base_ops["aten._grouped_mm"] == 0
    # The adapters change the adapted rows only; the base row is the base model's.
    assert not torch.allclose(one[:7], base[:7]) and not torch.allclose(one[1:7], eight[1:7])
    torch.testing.assert_close(one[7], base[7])
    torch.testing.assert_close(eight[7], base[7])
