"""The Triton attention backend inside the real model: the same greedy tokens as the torch
reference backend, on CPU (Triton interpreter) and, where there is a GPU, on CUDA
against the CPU path."""

from __future__ import annotations

import pytest
import torch

from infleet.engine.attention.triton_backend import TritonBackend
from infleet.engine.runner import ModelRunner
from tests.engine.kernel_cases import DEVICE, greedy_decode, tiny_loaded, use_backend

# One prompt within a block, one crossing two, one ending in a partial third block: the
# first step is a mixed prefill of all three, the rest are batched decodes.
PROMPTS = [[5, 9, 3], list(range(1, 19)), [7] * 33]


def _runner(loaded, backend: str = "reference") -> ModelRunner:
    return ModelRunner(loaded, num_blocks=24, attention_backend=backend)


@pytest.mark.slow
def test_greedy_tokens_match_the_reference_backend():
    loaded = tiny_loaded(seed=1)
    reference = greedy_decode(_runner(loaded), PROMPTS, 5)
    runner = _runner(loaded)
    use_backend(runner, TritonBackend())
    assert greedy_decode(runner, PROMPTS, 5) == reference


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares CUDA against CPU: no GPU")
@pytest.mark.parametrize("config", [{}, {"num_kv_heads": 4}, {"qkv_bias": True, "qk_norm": True}])
def test_cuda_triton_path_gives_the_cpu_paths_tokens(config):
    """Tiny fp32 models: the Triton kernels on the GPU reproduce the CPU torch path's
    greedy tokens exactly (fp32 dots run as IEEE fp32, not tf32)."""
    loaded = tiny_loaded(seed=2, **config)
    cpu_loaded = tiny_loaded(seed=2, **config)
    cpu_loaded.model.to("cpu")
    cpu_loaded.device = torch.device("cpu")
    cpu_tokens = greedy_decode(_runner(cpu_loaded, "sdpa"), PROMPTS, 8)
    runner = _runner(loaded)
    use_backend(runner, TritonBackend())
    assert DEVICE.type == "cuda"
    assert greedy_decode(runner, PROMPTS, 8) == cpu_tokens
