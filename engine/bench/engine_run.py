"""Offline run of our engine: every request arrives at once, the engine batches them."""

from __future__ import annotations

import time
from typing import Any

from infleet.engine.bench.stats import summarize
from infleet.engine.bench.workloads import BenchRequest
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.messages import SamplingParams


def _params(output_len: int) -> SamplingParams:
    return SamplingParams(max_tokens=output_len, temperature=0.0, ignore_eos=True)


def run_engine(engine: LLMEngine, requests: list[BenchRequest]) -> dict[str, Any]:
    # Warm-up: first-call costs (allocator, kernels) are not throughput.
    engine.add_request("warmup", requests[0].prompt_token_ids[:16], _params(4))
    while engine.has_unfinished():
        engine.step()
    times: list[list[float]] = [[] for _ in requests]
    start = time.perf_counter()
    for i, r in enumerate(requests):
        engine.add_request(str(i), r.prompt_token_ids, _params(r.output_len))
    while engine.has_unfinished():
        outputs = engine.step()
        now = time.perf_counter()
        for out in outputs:
            if out.error:
                raise RuntimeError(f"request {out.request_id} failed: {out.error}")
            times[int(out.request_id)] += [now] * len(out.token_ids)
    end = time.perf_counter()
    stats = summarize(times, sum(len(r.prompt_token_ids) for r in requests), start, end)
    stats["preemptions"] = engine.scheduler.num_preemptions
    return stats
