"""The linear layer's seams: a pluggable weight format, the per-token adapter hook, and
shard-aware loading (two tensor-parallel ranks add up to the whole layer)."""

import pytest
import torch

from infleet.engine.layers.linear import FloatLinear, Linear


def full_layer(gen: torch.Generator) -> tuple[Linear, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A packed q/k/v-like layer (out 8 + 4 + 4, in 6) loaded from three checkpoint parts."""
    parts = [torch.randn(n, 6, generator=gen) for n in (8, 4, 4)]
    biases = [torch.randn(n, generator=gen) for n in (8, 4, 4)]
    layer = Linear(6, [8, 4, 4], bias=True)
    for shard, (w, b) in enumerate(zip(parts, biases, strict=True)):
        layer.weight_loader(layer.weight, w, shard)
        layer.weight_loader(layer.bias, b, shard)
    return layer, torch.cat(parts), torch.cat(biases), torch.randn(3, 6, generator=gen)


def test_column_parallel_ranks_load_their_rows_of_every_packed_part():
    gen = torch.Generator().manual_seed(0)
    layer, weight, bias, x = full_layer(gen)
    whole = layer(x)
    outs = []
    for rank in range(2):
        part = Linear(6, [8, 4, 4], bias=True, split="output", tp_rank=rank, tp_size=2)
        for shard, (lo, hi) in enumerate([(0, 8), (8, 12), (12, 16)]):
            part.weight_loader(part.weight, weight[lo:hi], shard)
            part.weight_loader(part.bias, bias[lo:hi], shard)
        assert part.weight.shape == (8, 6)
        outs.append(part(x).split([4, 2, 2], dim=-1))
    # Each packed part is split between the ranks: q = [q_rank0, q_rank1], and so on.
    rebuilt = torch.cat([torch.cat([outs[0][i], outs[1][i]], -1) for i in range(3)], -1)
    assert torch.allclose(rebuilt, whole, atol=1e-6)


def test_row_parallel_ranks_sum_to_the_whole_layer():
    gen = torch.Generator().manual_seed(1)
    weight, x = torch.randn(5, 8, generator=gen), torch.randn(3, 8, generator=gen)
    total = torch.zeros(3, 5)
    for rank in range(2):
        part = Linear(8, 5, bias=False, split="input", tp_rank=rank, tp_size=2)
        part.weight_loader(part.weight, weight)
        assert part.weight.shape == (5, 4)
        total += part(x[:, rank * 4 : (rank + 1) * 4])  # the all-reduce
    assert torch.allclose(total, x @ weight.T, atol=1e-5)
    with pytest.raises(ValueError, match="tp_size"):
        Linear(7, 5, bias=False, split="input", tp_size=2)


def test_a_weight_format_and_an_adapter_plug_in():
    class HalfPrecision(FloatLinear):
        """A toy format: stores the weight in bfloat16 after loading."""

        def process_weights_after_loading(self, layer):
            layer.weight.data = layer.weight.data.to(torch.bfloat16)

        def apply(self, layer, x, bias):
            return super().apply(layer, x.to(torch.bfloat16), None).float()

    class AddOnes:
        def apply(self, x, y):
            y += 1.0

    gen = torch.Generator().manual_seed(2)
    weight, x = torch.randn(4, 6, generator=gen), torch.randn(2, 6, generator=gen)
    layer = Linear(6, 4, bias=False, quant_method=HalfPrecision())
    layer.weight_loader(layer.weight, weight)
    layer.process_weights_after_loading()
    assert layer.weight.dtype == torch.bfloat16
    layer.adapter = AddOnes()
    assert torch.allclose(layer(x), x @ weight.T + 1.0, atol=0.1)
