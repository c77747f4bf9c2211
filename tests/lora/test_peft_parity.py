"""The batched path adds exactly what peft's unmerged forward adds, layer by layer.

One flat batch mixes four adapters (ranks 2-16, rsLoRA on and off, attention-only and
attention + MLP, rank/alpha patterns) with base-model tokens, in runs longer and shorter
than a block; each engine linear (packed q/k/v and gate/up included) gets the same input
through our path and through peft's `adapter_names=` mixed-batch forward, in float32.
"""

from __future__ import annotations

import pytest
import torch

from infleet.lora.apply import LinearLoRA, set_lora_batch
from infleet.lora.base_model import BaseModelShape
from infleet.lora.batch import LoRABatch
from infleet.lora.host_weights import load_adapter
from infleet.lora.slots import DeviceSlots
from tests.lora.peft_adapters import MIXED, peft_model, peft_module, save_adapters, tiny_model

# Token runs of (adapter index or None for the base model, length): a 20-token run spans
# two blocks, single tokens look like decodes.
RUNS = [(0, 20), (None, 3), (1, 1), (2, 5), (None, 1), (3, 17), (0, 1), (1, 6), (3, 1), (2, 2)]


def runs_to_tokens(runs):
    return [a for a, n in runs for _ in range(n)]


@pytest.mark.parametrize(
    "arch,overrides", [("llama", {}), ("qwen2", {}), ("qwen3", {"head_dim": 32}), ("mistral", {})]
)
def test_mixed_batch_delta_equals_peft(tmp_path, arch, overrides):
    base = tiny_model(arch, **overrides)
    model = peft_model(base, MIXED)
    dirs = save_adapters(model, MIXED, tmp_path)
    shape = BaseModelShape.from_hf_config(base.config.to_dict())
    slots = DeviceSlots(shape, max_loras=5, max_rank=16, dtype=torch.float32)
    # Slot i+1 holds adapter i: slot 0 stays empty, so slot ids differ from adapter ids.
    for i, spec in enumerate(MIXED):
        slots.write(i + 1, load_adapter(dirs[spec.name], shape, 16, torch.float32))
    adapters = runs_to_tokens(RUNS)
    token_slots = [-1 if a is None else a + 1 for a in adapters]
    names = ["__base__" if a is None else MIXED[a].name for a in adapters]
    batch = LoRABatch.build(token_slots, 5)
    set_lora_batch(batch)
    torch.manual_seed(2)
    try:
        for layer in range(shape.num_layers):
            for linear in shape.linears:
                x = torch.randn(len(adapters), linear.in_features)
                y_base = torch.randn(len(adapters), linear.out_features)
                y = LinearLoRA(slots, layer, linear.name).apply(x, y_base.clone())
                for (module, size), offset in zip(linear.parts, linear.part_offsets, strict=True):
                    peft_layer = peft_module(model, layer, module)
                    with torch.no_grad():
                        full = peft_layer(x[:, None, :], adapter_names=names)[:, 0]
                        want = full - peft_layer.base_layer(x)
                    got = y[:, offset : offset + size] - y_base[:, offset : offset + size]
                    assert want.abs().max() > 0.1, "adapters must change this module"
                    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
                base_rows = [t for t, a in enumerate(adapters) if a is None]
                assert torch.equal(y[base_rows], y_base[base_rows])  # untouched, bit for bit
    finally:
        set_lora_batch(None)
