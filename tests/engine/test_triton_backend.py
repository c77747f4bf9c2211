"""The Triton attention backend inside the real model, on the tiny-model correctness suite
(tests/engine/tiny_models.py): the same greedy tokens as the CPU torch path — through
Triton's interpreter here, and compiled on CUDA where there is a GPU."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from infleet.engine.attention import select_backend
from infleet.engine.attention.triton_backend import TritonBackend
from infleet.engine.core.runner import ModelRunner
from infleet.engine.loader import load_model
from tests.engine.kernel_cases import use_backend
from tests.engine.test_model_hf_parity import CASES
from tests.engine.tiny_models import PROMPTS, build_checkpoint, runner_greedy


def _tokens(loaded, prompts, max_new: int, triton: bool, chunk: int = 5) -> list[list[int]]:
    # 4-token blocks and short prefill chunks: many pages per sequence, and steps that
    # mix prefill chunks (with cached context before them) and decodes. On CUDA the
    # runner picks triton itself and replays decode steps from CUDA graphs; on CPU the
    # kernels (interpreted) are put in place of the torch backend by hand.
    on_cuda = loaded.device.type == "cuda"
    backend = "triton" if triton and on_cuda else "sdpa"
    runner = ModelRunner(loaded, num_blocks=64, block_size=4, attention_backend=backend)
    if triton and not on_cuda:
        use_backend(runner, TritonBackend())
    assert (runner.graphs is not None) == (triton and on_cuda)
    return runner_greedy(runner, prompts, max_new, prefill_chunk=chunk)


@pytest.mark.slow
def test_interpreted_kernels_give_the_torch_paths_tokens(tmp_path):
    """Qwen3 (q/k norms, GQA, head_dim 32) through the interpreter: slow, so one case and
    a few tokens; the kernel tests cover windows, splits and fp8 directly."""
    arch, overrides = CASES["qwen3-headdim32"]
    loaded = load_model(str(build_checkpoint(tmp_path, arch, **overrides)), device="cpu")
    prompts = [loaded.tokenizer.encode(p) for p in PROMPTS]
    # 16-token chunks: the 30-token prompt's second chunk runs beside the others' decodes.
    expected = _tokens(loaded, prompts, 5, triton=False, chunk=16)
    assert _tokens(loaded, prompts, 5, triton=True, chunk=16) == expected


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares CUDA against CPU: no GPU")
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_triton_path_gives_the_cpu_paths_tokens(case, tmp_path):
    """Every tiny fp32 architecture: the Triton kernels on the GPU reproduce the CPU
    torch path's greedy tokens exactly (fp32 dots run as IEEE fp32, not tf32)."""
    arch, overrides = CASES[case]
    path = str(build_checkpoint(tmp_path, arch, **overrides))
    cpu = load_model(path, device="cpu", dtype="float32")
    gpu = load_model(path, device="cuda", dtype="float32")
    prompts = [cpu.tokenizer.encode(p) for p in PROMPTS]
    assert _tokens(gpu, prompts, 24, triton=True) == _tokens(cpu, prompts, 24, triton=False)


def test_backend_choice():
    """`auto` is torch on CPU; on CUDA flash-attn only where it imports and suits the
    configuration (block size a multiple of 256, no fp8 cache), else triton."""
    cpu = torch.device("cpu")
    assert select_backend("auto", cpu).name == "sdpa"
    for name in ("triton", "flash-attn"):
        with pytest.raises(ValueError, match=f"'{name}' needs a CUDA device; on cpu use torch"):
            select_backend(name, cpu)
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        flash = importlib.util.find_spec("flash_attn") is not None
        assert select_backend("auto", cuda, block_size=256).name == (
            "flash-attn" if flash else "triton"
        )
        assert select_backend("auto", cuda, block_size=16).name == "triton"
        with pytest.raises(ValueError, match="flash-attn"):
            select_backend("flash-attn", cuda, block_size=16)
