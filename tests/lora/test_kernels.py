"""The Triton kernels and the torch path against a float64 reference, on random slots.

Without CUDA the kernels run in Triton's interpreter (switched on, with the GPU's
rounding, by importing infleet.engine.kernels first: tests may import the engine, the
lora package may not). Shapes stay small but cover packed parts of different sizes, ranks
below the slot rank, multi-block segments, base tokens and an untouched empty slot.
"""

from __future__ import annotations

import pytest
import torch

import infleet.engine.kernels  # noqa: F401  (the interpreter, before triton is imported)
from infleet.engine.kernels.interpreter import match_gpu_semantics
from infleet.lora.batch import LoRABatch
from infleet.lora.punica_torch import add_lora_torch

match_gpu_semantics()
from infleet.lora.punica_triton import add_lora_triton  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
PARTS = (48, 16, 16)  # q, k, v of a GQA layer: different output sizes
IN, RANK, SLOTS = 40, 8, 4  # multiples of 8: the torch path's grouped GEMMs need them


def random_case(dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    slots = [3] * 21 + [-1] * 2 + [1] + [0] * 3 + [-1] + [1] * 17 + [3] * 2  # slot 2 unused
    order = torch.randperm(len(slots), generator=gen).tolist()  # adapters interleaved
    token_slots = [slots[i] for i in order]
    x = torch.randn(len(slots), IN, generator=gen)
    y = torch.randn(len(slots), sum(PARTS), generator=gen)
    a = torch.randn(SLOTS, len(PARTS) * RANK, IN, generator=gen) * 0.3
    b = torch.randn(SLOTS, sum(PARTS), RANK, generator=gen) * 0.3
    a[1] *= (torch.arange(len(PARTS) * RANK) % RANK < 3)[:, None]  # slot 1: rank 3
    cast = [t.to(dtype).to(DEVICE) for t in (x, y, a, b)]
    return token_slots, *cast


def reference(token_slots, x, y, a, b) -> torch.Tensor:
    """Token by token, in float64."""
    out = y.double().clone()
    offsets = [sum(PARTS[:i]) for i in range(len(PARTS))]
    for t, s in enumerate(token_slots):
        if s < 0:
            continue
        for p, (off, size) in enumerate(zip(offsets, PARTS, strict=True)):
            h = a[s, p * RANK : (p + 1) * RANK].double() @ x[t].double()
            out[t, off : off + size] += b[s, off : off + size].double() @ h
    return out


@pytest.mark.parametrize(
    "dtype,tol", [(torch.float32, 1e-6), (torch.float16, 2e-3), (torch.bfloat16, 1e-2)]
)
def test_triton_and_torch_paths_match_float64_reference(dtype, tol):
    token_slots, x, y, a, b = random_case(dtype)
    batch = LoRABatch.build(token_slots, SLOTS, DEVICE)
    want = reference(token_slots, x, y, a, b)
    base_rows = [t for t, s in enumerate(token_slots) if s < 0]
    for add in (add_lora_torch, add_lora_triton):
        got = y.clone()
        add(got, x, batch, a, b, PARTS)
        err = ((got.double() - want).norm() / (want - y.double()).norm()).item()
        assert err < tol, f"{add.__name__}: relative error {err:.2e}"
        assert torch.equal(got[base_rows], y[base_rows]), f"{add.__name__} touched base rows"


def test_triton_skips_padding_blocks_of_a_fixed_shape_batch():
    """CUDA graphs replay a fixed block count: unused blocks must change nothing."""
    token_slots, x, y, a, b = random_case(torch.float32, seed=1)
    tight = LoRABatch.build(token_slots, SLOTS, DEVICE)
    padded = LoRABatch.build(token_slots, SLOTS, DEVICE, pad_blocks_to=12)
    assert padded.block_tokens.shape[0] == 12 > tight.block_tokens.shape[0]
    want, got = y.clone(), y.clone()
    add_lora_triton(want, x, tight, a, b, PARTS)
    add_lora_triton(got, x, padded, a, b, PARTS)
    assert torch.equal(got, want)
    all_base = LoRABatch.build([-1] * len(token_slots), SLOTS, DEVICE, pad_blocks_to=4)
    untouched = y.clone()
    add_lora_triton(untouched, x, all_base, a, b, PARTS)
    assert torch.equal(untouched, y)
