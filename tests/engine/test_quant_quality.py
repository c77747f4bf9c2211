"""The quality benchmark's code on a ~2k-token smoke (docs/benchmarks.md has the long run):
SmolLM2-135M through the three weight formats on pydoc_data.topics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infleet.engine.bench.quant_breakdown import fp4_weight, fp8_activation, fp8_weight
from infleet.engine.bench.quant_quality import agreement, run
from infleet.engine.layers.linear import Linear
from infleet.engine.quantization.checkpoint import online_scheme
from infleet.engine.quantization.methods import METHOD_CLASSES


def test_agreement_counts_the_prefix_before_divergence():
    assert agreement([[1, 2, 3, 4]], [[1, 2, 9, 4]]) == 0.5
    assert agreement([[1, 2], [3, 4]], [[1, 2], [0, 4]]) == 0.5


@pytest.mark.slow
@pytest.mark.timeout(1800)  # three model loads and 6k tokens of CPU forwards
def test_quantized_smollm2_stays_close_to_the_reference():
    results = run("builtin:smollm2-135m-instruct", 2048, 4, 4, 512, jobs=1)
    none, fp8, fp4 = results["none"], results["fp8"], results["fp4"]
    assert 5 < none["perplexity"] < 40  # a trained model on English prose and code
    assert none["greedy_agreement"] == 1.0 and none["perplexity_vs_reference"] == 0
    # Bounds around what 4k tokens measured (fp8 +3.1 %, fp4 +27 %, docs/benchmarks.md),
    # with room for a 2k-token sample's noise; the goals (2 %, 10 %) are not met yet.
    assert abs(fp8["perplexity_vs_reference"]) < 0.06
    assert 0 < fp4["perplexity_vs_reference"] < 0.45
    assert fp4["weight_bytes"] < fp8["weight_bytes"] < none["weight_bytes"]


@pytest.mark.parametrize("method", ["fp8", "fp4"])
def test_breakdown_rounds_as_the_quantized_layers_compute(method):
    """quant_breakdown's in-place rounding is the engine's arithmetic: a packed layer
    (three parts with different ranges, so each part's own NVFP4 global scale matters)
    quantized by its LinearMethod gives what the float layer with rounded weights (and,
    for fp8, rounded inputs) gives, up to fp32 summation order."""
    shards, k = [64, 32, 32], 128
    gen = torch.Generator().manual_seed(7)
    ranges = (1.0, 8.0, 0.1)
    weight = torch.cat(
        [torch.randn(n, k, generator=gen) * r for n, r in zip(shards, ranges, strict=True)]
    )
    x = torch.randn(5, k, generator=gen)

    quantized = Linear(k, shards, bias=False)
    quantized.quant_method = METHOD_CLASSES[method](online_scheme(method), shards)
    quantized.weight.data.copy_(weight)
    quantized.process_weights_after_loading()

    rounded = Linear(k, shards, bias=False)
    round_weight = {"fp8": fp8_weight, "fp4": fp4_weight}[method]
    rounded.weight.data.copy_(round_weight(weight, shards))
    if method == "fp8":
        rounded.register_forward_pre_hook(fp8_activation)
        assert not torch.equal(rounded(x), F.linear(x, rounded.weight))  # the hook rounds

    expected, got = quantized(x), rounded(x)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert (got - x @ weight.t()).abs().max() > 1e-3  # and the rounding is there at all
