"""Token-exact greedy equality with transformers on tiny random checkpoints of every
supported architecture, driven through ModelRunner's paged, chunked, multi-sequence steps."""

from __future__ import annotations

import pytest
import torch

from infleet.engine.attention import PagedAttention
from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import load_model
from tests.engine.tiny_models import PROMPTS, build_checkpoint, hf_greedy, runner_greedy

MAX_NEW = 24
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,  # short, so the tiny contexts are "long"
}
CASES = {
    "llama": ("llama", {}),
    "llama-tied-llama3rope": ("llama", {"tie_word_embeddings": True, "rope_scaling": LLAMA3_ROPE}),
    "llama-linearrope-biases": (
        "llama",
        {
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
            "attention_bias": True,
            "mlp_bias": True,
        },
    ),
    "qwen2-tied-sharded": ("qwen2", {"tie_word_embeddings": True, "max_shard_size": "100KB"}),
    "qwen3-headdim32": ("qwen3", {"head_dim": 32}),
    "mistral-window8": ("mistral", {"sliding_window": 8}),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    arch, overrides = CASES[request.param]
    path = build_checkpoint(tmp_path_factory.mktemp(request.param), arch, **overrides)
    loaded = load_model(str(path), device="cpu", dtype="float32")
    prompts = [loaded.tokenizer.encode(p) for p in PROMPTS]
    return path, loaded, prompts, hf_greedy(path, prompts, MAX_NEW)


def test_batched_chunked_prefill_matches_transformers(case):
    _, loaded, prompts, expected = case
    runner = ModelRunner(loaded, num_blocks=64, block_size=4, attention_backend="sdpa")
    # Chunks of 5: the longest prompt takes several steps while the others already decode.
    assert runner_greedy(runner, prompts, MAX_NEW, prefill_chunk=5) == expected


def test_single_sequence_reference_backend_matches_transformers(case):
    _, loaded, prompts, expected = case
    runner = ModelRunner(loaded, num_blocks=16, block_size=16, attention_backend="reference")
    # The longest prompt, alone and unchunked (the batched test covers the others).
    assert runner_greedy(runner, [prompts[2]], MAX_NEW) == [expected[2]]


def test_prefill_logits_match_transformers(case):
    import transformers

    path, loaded, prompts, _ = case
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with torch.no_grad():
        want = hf(torch.tensor([prompts[2]])).logits[0, -1]
    runner = ModelRunner(loaded, num_blocks=16, block_size=16)

    got = runner.forward([SeqSlice(prompts[2], 0, list(range(4)))])[0]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["mistral-window8"], indirect=True)
def test_sliding_window_changes_the_answer(case):
    """Guards the Mistral case against passing trivially: without the window, tokens differ."""
    _, loaded, prompts, expected = case
    assert loaded.config.sliding_windows == (8, 8)
    layers = [m for m in loaded.model.modules() if isinstance(m, PagedAttention)]
    windows = [m.sliding_window for m in layers]
    try:
        for m in layers:
            m.sliding_window = None
        runner = ModelRunner(loaded, num_blocks=64, block_size=4)
        assert runner_greedy(runner, prompts[2:], MAX_NEW) != expected[2:]
    finally:
        for m, w in zip(layers, windows, strict=True):
            m.sliding_window = w


def test_bfloat16_smoke(tmp_path):
    import transformers

    path = build_checkpoint(tmp_path, "llama", tie_word_embeddings=True)
    loaded = load_model(str(path), device="cpu", dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    prompts = [loaded.tokenizer.encode(p) for p in PROMPTS]
    runner = ModelRunner(loaded, num_blocks=64, block_size=4)
    assert runner.kv_cache.dtype == torch.bfloat16
    out = runner_greedy(runner, prompts, 16, prefill_chunk=5)
    assert all(len(o) == 16 for o in out)
    # Against transformers in bf16: same first tokens, logits within bf16 rounding.
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    with torch.no_grad():
        first = hf.generate(torch.tensor([prompts[1]]), max_new_tokens=4, do_sample=False)
        ref = hf(torch.tensor([prompts[1]])).logits[0, -1].float()
    assert out[1][:4] == first[0, len(prompts[1]) :].tolist()
    got = ModelRunner(loaded, num_blocks=8).forward([SeqSlice(prompts[1], 0, [0, 1])])[0]
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_transformers(case):
    path, _, prompts, expected = case
    loaded = load_model(str(path), device="cuda", dtype="float32")
    runner = ModelRunner(loaded, num_blocks=64, block_size=4)
    assert runner_greedy(runner, prompts, MAX_NEW, prefill_chunk=5) == expected
