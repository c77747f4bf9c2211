"""ModelRunner: KV pool sizing, batch invariance of logits, and clear errors for bad slices."""

from __future__ import annotations

import pytest
import torch

from infleet.engine.attention import get_context
from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import load_model
from tests.engine.tiny_models import build_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_checkpoint(tmp_path_factory.mktemp("runner"), "llama")
    return load_model(str(path), device="cpu", dtype="float32")


def test_kv_bytes_per_block_matches_the_allocation(tiny):
    runner = ModelRunner(tiny, num_blocks=10, block_size=8)
    per_block = ModelRunner.kv_bytes_per_block(tiny.config, 8, torch.float32)
    assert per_block == 2 * 2 * 8 * 2 * 16 * 4  # K+V, layers, tokens, kv heads, head dim, fp32
    assert runner.kv_cache.nbytes == 10 * per_block
    assert ModelRunner.kv_bytes_per_block(tiny.config, 8, torch.bfloat16) == per_block // 2


def test_logits_do_not_depend_on_the_rest_of_the_batch(tiny):
    runner = ModelRunner(tiny, num_blocks=32, block_size=4)
    prompt = list(range(3, 14))
    alone = runner.forward([SeqSlice(prompt, 0, [5, 9, 2])])
    assert alone.shape == (1, tiny.config.vocab_size) and alone.dtype == torch.float32
    # The same prompt, in two chunks, beside a decode and another prefill, on other blocks.
    runner.forward([SeqSlice(prompt[:6], 0, [7, 1, 3])])
    busy = runner.forward(
        [
            SeqSlice([100, 101, 102, 103], 0, [11]),
            SeqSlice(prompt[6:], 6, [7, 1, 3]),
            SeqSlice([42], 4, [11, 12]),
        ]
    )
    torch.testing.assert_close(busy[1], alone[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="no attention context"):
        get_context()  # cleared after each step


@pytest.mark.parametrize(
    "batch,message",
    [
        ([], "empty batch"),
        ([SeqSlice([], 0, [0])], "needs tokens"),
        ([SeqSlice([1] * 5, 0, [0])], "5 tokens need 2"),
        ([SeqSlice([1], 0, [99])], r"ids outside \[0, 8\)"),
        ([SeqSlice([512], 0, [0])], r"outside the vocabulary \[0, 512\)"),
        ([SeqSlice([1], 256, list(range(8)))], "beyond max_model_len 256"),
    ],
    ids=["empty", "no-tokens", "short-table", "bad-block", "bad-token", "too-long"],
)
def test_bad_slices_are_rejected(tiny, batch, message):
    runner = ModelRunner(tiny, num_blocks=8, block_size=4)
    with pytest.raises(ValueError, match=message):
        runner.forward(batch)


def test_bad_runner_options(tiny):
    with pytest.raises(ValueError, match="--kv-cache-dtype: 'int4' is not one of auto, fp8"):
        ModelRunner(tiny, num_blocks=4, kv_cache_dtype="int4")
    with pytest.raises(ValueError, match="unknown attention backend 'flash'"):
        ModelRunner(tiny, num_blocks=4, attention_backend="flash")
    with pytest.raises(ValueError, match="num_blocks >= 1"):
        ModelRunner(tiny, num_blocks=0)
