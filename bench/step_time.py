"""Whole `LLMEngine.step()` time at batch 1 / 64 / 256 with a stub model: runs on this
branch and on older trees (before engine/core/ and engine/messages.py) alike, so the same
command compares them (run it with each tree's own interpreter, from the repo root).

The stub: SmolLM2's tokenizer and 49,152-token vocabulary over a 1-layer, 64-wide random
model, so the engine's own work dominates. Each request: 8-token prompt, temperature 0.8,
top-k 50, top-p 0.95, decoding to the end; 10 warm-up steps, then the median of 15.

    .venv/bin/python -m bench.step_time [--penalties] [--no-async]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import LoadedModel, load_model
from infleet.engine.models import build_model

try:
    from infleet.engine.messages import SamplingParams
except ImportError:  # trees before issue 10
    from infleet.engine.sequence import SamplingParams  # type: ignore[no-redef]


def stub(device: str = "cpu") -> LoadedModel:
    """SmolLM2's tokenizer and vocabulary over a 1-layer, 64-wide random model."""
    real = load_model("builtin:smollm2-135m-instruct", device="cpu", dtype="float32")
    config = dataclasses.replace(
        real.config, hidden_size=64, intermediate_size=64, num_layers=1, num_heads=2,
        num_kv_heads=1, head_dim=32, sliding_windows=(None,),
    )  # fmt: skip
    dev = torch.device(device)
    model = build_model(config, dev, torch.float32)
    return LoadedModel(model, config, real.tokenizer, "stub", dev, torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--penalties", action="store_true")
    parser.add_argument("--no-async", action="store_true", help="--no-async-scheduling")
    args = parser.parse_args()
    loaded = stub()
    penalties = dict(presence_penalty=0.5, frequency_penalty=0.3, repetition_penalty=1.1)
    params = SamplingParams(
        max_tokens=200, temperature=0.8, top_p=0.95, top_k=50, ignore_eos=True,
        **(penalties if args.penalties else {}),
    )  # fmt: skip
    for batch in args.batch_sizes:
        kw = dict(model="stub", max_num_seqs=batch, num_kv_blocks=batch * 16 + 16)
        kw["max_num_batched_tokens"] = max(2048, batch)
        if args.no_async:
            kw["async_scheduling"] = False
        eng = LLMEngine(EngineArgs(**kw), loaded)
        for i in range(batch):
            eng.add_request(f"r{i}", [1 + i % 100] * 8, params)
        for _ in range(10):
            eng.step()
        walls = []
        for _ in range(15):
            start = time.perf_counter()
            eng.step()
            walls.append(time.perf_counter() - start)
        print(f"batch {batch}: {1e3 * statistics.median(walls):.1f} ms per step", flush=True)


if __name__ == "__main__":
    main()
