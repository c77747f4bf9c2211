"""Running a workload on our engine in-process: `LLMEngine.add_request` + `step()`.

Offline runs hand every request over at once; online runs hand each over at its arrival
time, stepping the engine in between (a step in flight delays an arrival's first token,
as it would in a server). Token times are taken when `step()` returns them.
"""

from __future__ import annotations

import time

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.bench.gpu_report import RequestTrace
from infleet.engine.bench.gpu_workloads import Request
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import LoadedModel
from infleet.engine.messages import SamplingParams


def make_engine(loaded: LoadedModel, args: EngineArgs) -> LLMEngine:
    return LLMEngine(args, loaded=loaded)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(engine: LLMEngine, requests: list[Request]) -> tuple[list[RequestTrace], float]:
    """Serve `requests` (arrival times respected); returns traces and the wall time."""
    device = engine.loaded.device
    traces = [RequestTrace(r.arrival, len(r.prompt)) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: requests[i].arrival)
    pending = 0
    _sync(device)
    start = time.perf_counter()
    while pending < len(order) or engine.has_unfinished():
        now = time.perf_counter() - start
        while pending < len(order) and requests[order[pending]].arrival <= now:
            i = order[pending]
            r = requests[i]
            params = SamplingParams(max_tokens=r.max_tokens, temperature=0.0, ignore_eos=True)
            engine.add_request(f"r{i}", r.prompt, params)
            traces[i].arrival = now  # when it was handed over, not when it was due
            pending += 1
        if not engine.has_unfinished():
            time.sleep(max(0.0, requests[order[pending]].arrival - now))
            continue
        outputs = engine.step()
        now = time.perf_counter() - start
        for out in outputs:
            if out.error:
                raise RuntimeError(f"request {out.request_id} failed: {out.error}")
            traces[int(out.request_id[1:])].token_times += [now] * len(out.token_ids)
    wall = time.perf_counter() - start
    return traces, wall
