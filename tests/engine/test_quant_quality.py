"""The quality benchmark's code on a ~2k-token smoke (docs/benchmarks.md has the long run):
SmolLM2-135M through the three weight formats on pydoc_data.topics."""

from __future__ import annotations

import pytest

from infleet.engine.bench.quant_quality import agreement, run


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
