"""Host time of one engine step at batch 1 / 64 / 256, broken down.

The model is a 1-layer stub with SmolLM2's tokenizer and vocabulary (49152): its forward
costs almost nothing, so what is measured is the engine's own work per decode step:
schedule (the scheduler), launch (schedule + prepare + the persistent batch's bookkeeping
+ handing the step to the device thread), prepare (the step's inputs), sample (the batched
sampler, device thread), output (the core's token deltas) and output+api (plus the API
side's detokenization and metrics), and the whole step. Phases are timed in synchronous mode, where they do
not overlap; the last column is the step time with async scheduling, where the host work
of step N+1 runs during step N's forward. Every request decodes until the end (ignore_eos),
so the batch stays full.

    .venv/bin/python bench/engine_step.py --batch-sizes 1 64 256 [--penalties] [--logprobs 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.core import engine_core
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import LoadedModel, load_model
from infleet.engine.messages import SamplingParams
from infleet.engine.models import build_model

PHASES = ("schedule", "launch", "prepare", "forward", "sample", "output", "output+api")


def stub(device: str) -> LoadedModel:
    """SmolLM2's tokenizer and vocabulary over a 1-layer, 64-wide random model."""
    real = load_model("builtin:smollm2-135m-instruct", device="cpu", dtype="float32")
    config = dataclasses.replace(
        real.config, hidden_size=64, intermediate_size=64, num_layers=1, num_heads=2,
        num_kv_heads=1, head_dim=32, sliding_windows=(None,),
    )  # fmt: skip
    dev = torch.device(device)
    model = build_model(config, dev, torch.float32)
    return LoadedModel(model, config, real.tokenizer, "stub", dev, torch.float32)


def timed(record: list[float], fn: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - start)

    return wrapper


def measure(loaded: LoadedModel, batch: int, params: SamplingParams, async_on: bool, steps: int):
    args = EngineArgs(
        model="stub", max_num_seqs=batch, max_num_batched_tokens=max(2048, batch),
        num_kv_blocks=batch * 16 + 16, async_scheduling=async_on, enforce_eager=True,
    )  # fmt: skip
    eng = LLMEngine(args, loaded)
    core = eng.core
    times: dict[str, list[float]] = defaultdict(list)
    core.scheduler.schedule = timed(times["schedule"], core.scheduler.schedule)
    core.runner.prepare = timed(times["prepare"], core.runner.prepare)
    core.runner.run = timed(times["forward"], core.runner.run)
    real_sample = engine_core.sample
    engine_core.sample = timed(times["sample"], real_sample)
    core._launch = timed(times["launch"], core._launch)
    core._deltas = timed(times["core_output"], core._deltas)
    eng._process = timed(times["output"], eng._process)
    try:
        for i in range(batch):
            eng.add_request(f"r{i}", [1 + i % 100] * 8, params)
        for _ in range(10):  # prefill and warm-up
            eng.step()
        for key in times:
            times[key].clear()
        walls = []
        for _ in range(steps):
            start = time.perf_counter()
            eng.step()
            walls.append(time.perf_counter() - start)
    finally:
        engine_core.sample = real_sample
        core.shutdown()
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items() if v}
    ms["step"] = 1e3 * statistics.median(walls)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--penalties", action="store_true", help="presence/frequency/repetition")
    parser.add_argument("--logprobs", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    penalties = (
        dict(presence_penalty=0.5, frequency_penalty=0.3, repetition_penalty=1.1)
        if args.penalties
        else {}
    )
    params = SamplingParams(
        max_tokens=200, temperature=0.8, top_p=0.95, top_k=50, ignore_eos=True,
        logprobs=args.logprobs, **penalties,
    )  # fmt: skip
    loaded = stub(args.device)
    keys = ("schedule", "launch", "prepare", "forward", "sample", "core_output", "output")
    print(f"ms per decode step, median of {args.steps} ({args.device}; {params})")
    print("batch " + " ".join(f"{p:>10}" for p in PHASES) + "  step(sync) step(async)")
    for batch in args.batch_sizes:
        sync = measure(loaded, batch, params, False, args.steps)
        asyn = measure(loaded, batch, params, True, args.steps)
        cols = " ".join(f"{sync.get(k, 0.0):10.2f}" for k in keys)
        print(f"{batch:5d} {cols}  {sync['step']:10.2f} {asyn['step']:11.2f}")


if __name__ == "__main__":
    main()
