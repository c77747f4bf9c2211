"""Running a workload on transformers' own paged continuous batching, same process.

`model.init_continuous_batching()` gives a `ContinuousBatchingManager`: a background
thread with a paged KV cache that schedules requests added with `add_request`. This is
what `model.generate_batch` runs, used directly so every request gets its own output
length and arrival time. Token times come from the manager's own per-token timestamps
(`record_timestamps=True`), measured from the request's creation.
"""

from __future__ import annotations

import logging
import time

import torch

from infleet.engine.bench.gpu_report import RequestTrace
from infleet.engine.bench.gpu_workloads import Request


def _manager(model, requests: list[Request], *, cpu_blocks: int):
    from transformers import ContinuousBatchingConfig, GenerationConfig
    from transformers.generation.continuous_batching.utils import WorkloadHints

    # The manager logs an ERROR on CPU (no psutil for a memory breakdown): expected here.
    logging.getLogger("ContinuousBatchingLogger").setLevel(logging.CRITICAL)
    generation = GenerationConfig(do_sample=False, eos_token_id=-1, pad_token_id=0)
    batching = ContinuousBatchingConfig()  # on CUDA: sized from free memory, CUDA graphs
    if next(model.parameters()).device.type != "cuda":
        # On CPU nothing can be sized from device memory: an explicit, small cache. (The
        # tokens-per-page field is `page_size` after transformers 5.17, `block_size` up to it.)
        fields = ContinuousBatchingConfig.__dataclass_fields__
        page = {"page_size" if "page_size" in fields else "block_size": 16}
        batching = ContinuousBatchingConfig(num_blocks=cpu_blocks, max_batch_tokens=256, **page)
    hints = WorkloadHints(  # what generate_batch passes: lets it size batches and graphs
        max_prompt_length=max(len(r.prompt) for r in requests),
        max_generated_length=max(r.max_tokens for r in requests),
        num_requests=len(requests),
    )
    return model.init_continuous_batching(
        generation_config=generation, continuous_batching_config=batching, workload_hints=hints
    )


def run(model, requests: list[Request], *, cpu_blocks: int = 256):
    """Serve `requests` on `model`; returns (traces, wall seconds)."""
    manager = _manager(model, requests, cpu_blocks=cpu_blocks)
    if next(model.parameters()).device.type == "cuda":
        manager.warmup()
    manager.start()
    traces: dict[str, RequestTrace] = {}
    finished = {}
    try:
        start = time.perf_counter()
        for i in sorted(range(len(requests)), key=lambda i: requests[i].arrival):
            r = requests[i]
            delay = r.arrival - (time.perf_counter() - start)
            if delay > 0:
                time.sleep(delay)
            rid = manager.add_request(
                r.prompt, request_id=f"r{i}", max_new_tokens=r.max_tokens,
                record_timestamps=True, eos_token_id=-1,
            )  # fmt: skip
            traces[rid] = RequestTrace(0.0, len(r.prompt))
        while len(finished) < len(requests):
            result = manager.get_result(timeout=600)
            if result is None:
                raise RuntimeError("transformers' continuous batching stopped with requests left")
            if result.error:
                raise RuntimeError(f"request {result.request_id} failed: {result.error}")
            if result.is_finished():
                finished[result.request_id] = result
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    finally:
        manager.stop(block=True, timeout=30)
        manager.destroy()
    for rid, result in finished.items():
        trace = traces[rid]
        # The manager's clock is perf_counter too: shift to the run's start.
        trace.arrival = result.created_time - start
        trace.token_times = [t - start for t in result.timestamps or []]
    return [traces[f"r{i}"] for i in range(len(requests))], wall
