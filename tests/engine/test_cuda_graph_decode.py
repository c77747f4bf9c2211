"""CUDA-graph decode: buckets, static buffers with padding rows, capture and replay.

Capture needs a GPU; what a graph replays — the model over the static buffers, padded to
the bucket — runs anywhere, so CPU checks that path (Triton kernels in the interpreter)
gives the same greedy tokens as the plain runner.
"""

from __future__ import annotations

import pytest
import torch

from infleet.engine.attention import reset_context, set_context
from infleet.engine.attention.triton_backend import TritonBackend
from infleet.engine.core.cuda_graphs import (
    DecodeGraphs,
    StaticDecodeInputs,
    bucket_for,
    graph_batch_sizes,
)
from infleet.engine.core.runner import ModelRunner, SeqSlice
from tests.engine.kernel_cases import DEVICE, greedy_decode, tiny_loaded, use_backend

PROMPTS = [list(range(1, 19)), [5, 9, 3], [7] * 33]  # 2 blocks, 1 block, 3 blocks (partial)
STEPS = 5


def test_batch_sizes_and_buckets():
    assert graph_batch_sizes(1) == [1]
    assert graph_batch_sizes(8) == [1, 2, 4, 8]
    assert graph_batch_sizes(40) == [1, 2, 4, 8, 16, 32, 40]
    sizes = graph_batch_sizes(256)
    assert sizes[:5] == [1, 2, 4, 8, 16] and sizes[-1] == 256 and len(sizes) == 20
    assert [bucket_for(n, sizes) for n in (1, 3, 9, 17, 256)] == [1, 4, 16, 32, 256]
    assert bucket_for(257, sizes) is None


def test_fill_copies_the_batch_and_pads_the_rest_out_of_the_cache():
    inputs = StaticDecodeInputs.allocate(8, 4, DEVICE)
    runner = ModelRunner(tiny_loaded(), num_blocks=16, attention_backend="reference")
    batch = [SeqSlice([11], 20, [3, 4]), SeqSlice([12], 0, [7])]
    input_ids, ctx = runner.prepare(batch)
    inputs.fill(input_ids, ctx, bucket=4)
    assert inputs.input_ids[:2].tolist() == [11, 12]
    assert inputs.positions[:2].tolist() == [20, 0]
    assert inputs.slot_mapping[:4].tolist() == [4 * 16 + 4, 7 * 16, -1, -1]
    assert inputs.context_lens[:4].tolist() == [21, 1, 0, 0]
    assert inputs.block_tables[:2, :2].tolist() == [[3, 4], [7, -1]]
    graph_ctx = inputs.context(4, 16, max_context_len=256)
    assert graph_ctx.cu_seqlens_q.tolist() == [0, 1, 2, 3, 4]
    assert graph_ctx.context_lens_host == [256] * 4  # launch shapes for the worst case
    with pytest.raises(ValueError, match="wide"):
        wide = ctx.block_tables.new_zeros(2, 5)
        ctx.block_tables = wide
        inputs.fill(input_ids, ctx, bucket=4)


def _static_buffer_decode(runner: ModelRunner, bucket: int):
    """A decode step run the way a graph replays it: the model over the static buffers,
    padded to `bucket` rows."""
    inputs = StaticDecodeInputs.allocate(bucket, 8, DEVICE)

    def decode(batch: list[SeqSlice]) -> torch.Tensor:
        input_ids, ctx = runner.prepare(batch)
        inputs.fill(input_ids, ctx, bucket)
        set_context(inputs.context(bucket, runner.block_size, runner.max_model_len))
        try:
            with torch.inference_mode():
                hidden = runner.model(inputs.input_ids[:bucket], inputs.positions[:bucket])
                return runner.model.compute_logits(hidden[: len(batch)]).float()
        finally:
            reset_context()

    return decode


@pytest.mark.slow
def test_padded_static_decode_gives_the_plain_runners_tokens():
    loaded = tiny_loaded(seed=3)
    plain = greedy_decode(ModelRunner(loaded, num_blocks=24, attention_backend="reference"),
                          PROMPTS, STEPS)  # fmt: skip
    runner = ModelRunner(loaded, num_blocks=24, attention_backend="reference")
    use_backend(runner, TritonBackend())
    decode = _static_buffer_decode(runner, bucket=4)  # 3 sequences + one padding row
    assert greedy_decode(runner, PROMPTS, STEPS, decode) == plain


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph capture needs a CUDA GPU")
def test_captured_graphs_replay_the_eager_tokens():
    loaded = tiny_loaded(seed=4)
    eager_runner = ModelRunner(loaded, num_blocks=24, attention_backend="reference")
    use_backend(eager_runner, TritonBackend())
    eager = greedy_decode(eager_runner, PROMPTS, STEPS)
    runner = ModelRunner(loaded, num_blocks=24, attention_backend="reference")
    use_backend(runner, TritonBackend())
    graphs = DecodeGraphs(
        runner.model, max_batch=8, max_blocks_per_seq=8, block_size=runner.block_size,
        max_context_len=runner.max_model_len, device=DEVICE,
    )  # fmt: skip
    graphs.capture()
    assert sorted(graphs.graphs) == [1, 2, 4, 8]

    def decode(batch: list[SeqSlice]) -> torch.Tensor:
        input_ids, ctx = runner.prepare(batch)
        with torch.inference_mode():
            return runner.model.compute_logits(graphs.run(input_ids, ctx)).float()

    assert greedy_decode(runner, PROMPTS, STEPS, decode) == eager
