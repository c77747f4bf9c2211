"""Host time of one step's input preparation (`ModelRunner.prepare`) at large batch.

Decode batches at a long context: every sequence has one new token and a block table of
`ceil(context / block_size)` blocks scattered over the pool (a fragmented pool, as after
hours of serving). `--chunk N` makes one slice a prefill chunk of N tokens instead (the
mixed step chunked prefill builds). The model is a 1-layer stub: only its vocabulary
and maximum length matter here. On CUDA the time includes the host-to-device copy
(the call synchronizes before the clock stops).

    .venv/bin/python bench/runner_prep.py --batch-sizes 1 64 256 --context 4096
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import LoadedModel
from infleet.engine.model_config import ModelConfig
from infleet.engine.models import build_model

VOCAB = 128256  # Llama 3's: token ids are realistic in size


def stub_runner(num_blocks: int, block_size: int, max_len: int, device: str) -> ModelRunner:
    config = ModelConfig(
        architecture="llama", vocab_size=VOCAB, hidden_size=8, intermediate_size=8,
        num_layers=1, num_heads=1, num_kv_heads=1, head_dim=8,
        max_position_embeddings=max_len, rms_norm_eps=1e-6, rope_theta=10000.0,
    )  # fmt: skip
    dev = torch.device(device)
    loaded = LoadedModel(build_model(config, dev, torch.bfloat16), config, None, "stub", dev,
                         torch.bfloat16)  # fmt: skip
    return ModelRunner(loaded, num_blocks=num_blocks, block_size=block_size,
                       attention_backend="torch", cuda_graph_max_batch=0)  # fmt: skip


def decode_batch(
    batch: int, context: int, block_size: int, chunk: int, rng: random.Random
) -> list[SeqSlice]:
    width = -(-context // block_size)
    pool = list(range(batch * width))
    rng.shuffle(pool)
    slices = [
        SeqSlice([rng.randrange(VOCAB)], context - 1, pool[i * width : (i + 1) * width])
        for i in range(batch)
    ]
    if chunk:  # the last slice prefills the final `chunk` tokens of its context instead
        slices[-1].token_ids = [rng.randrange(VOCAB) for _ in range(chunk)]
        slices[-1].start_pos = context - chunk
    return slices


def best_ms(runner: ModelRunner, batch: list[SeqSlice], repeat: int) -> float:
    sync = torch.cuda.synchronize if runner.device.type == "cuda" else lambda: None
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        runner.prepare(batch)
        sync()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--context", type=int, default=4096, help="tokens per sequence")
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=0, help="one slice prefills this many")
    parser.add_argument("--repeat", type=int, default=50, help="calls per size; best is shown")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.chunk >= args.context:
        parser.error(f"--chunk {args.chunk} must be below --context {args.context}")
    width = -(-args.context // args.block_size)
    rng = random.Random(0)
    runner = stub_runner(max(args.batch_sizes) * width, args.block_size, args.context,
                         args.device)  # fmt: skip
    print(f"device={args.device} context={args.context} block_size={args.block_size} "
          f"chunk={args.chunk} best of {args.repeat}")  # fmt: skip
    for batch_size in args.batch_sizes:
        batch = decode_batch(batch_size, args.context, args.block_size, args.chunk, rng)
        runner.prepare(batch)  # warm-up: allocations, pinned staging on CUDA
        ms = best_ms(runner, batch, args.repeat)
        print(f"batch {batch_size:4d}: {ms:8.3f} ms per prepare")


if __name__ == "__main__":
    main()
