"""Batch-1 decode against the memory roofline, measured in the same run.

A decode step at batch 1 must read every weight once plus the K/V of every cached
token; nothing else comes close in bytes. The fastest a step can be is those bytes over
the device's copy bandwidth, measured here with a large device-to-device copy (bytes
read plus bytes written, METHOD.md), so the share of the roofline is
`measured tok/s / (bandwidth / bytes per step)`.
"""

from __future__ import annotations

import statistics
import time

import torch

from infleet.engine.bench.gpu_report import RequestTrace
from infleet.engine.model_config import ModelConfig


def copy_bandwidth(device: torch.device, nbytes: int, repeats: int = 20) -> float:
    """Bytes per second of `dst.copy_(src)` (read + write), median of `repeats` runs on
    random data (never zeros: they can run faster than real data)."""
    src = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            dst.copy_(src)
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        else:
            start = time.perf_counter()
            dst.copy_(src)
            times.append(time.perf_counter() - start)
    if not torch.equal(dst, src):
        raise RuntimeError("the bandwidth copy did not copy")
    return 2 * nbytes / statistics.median(times)


def kv_bytes_read(config: ModelConfig, context_len: int, kv_element_bytes: int) -> int:
    """K and V of `context_len` tokens across all layers: what one decode step reads."""
    per_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim
    return per_token * context_len * kv_element_bytes


def decode_figures(
    trace: RequestTrace,
    *,
    config: ModelConfig,
    weight_bytes: int,
    kv_element_bytes: int,
    bandwidth: float,
) -> dict:
    """tok/s over the decode phase of one batch-1 request (prefill excluded) and its share
    of the roofline at the mean context length of that phase."""
    steps = len(trace.token_times) - 1
    if steps < 1:
        raise ValueError("batch-1 decode needs at least two output tokens")
    tok_s = steps / (trace.token_times[-1] - trace.token_times[0])
    mean_context = trace.prompt_len + 1 + steps / 2
    step_bytes = weight_bytes + kv_bytes_read(config, round(mean_context), kv_element_bytes)
    roofline = bandwidth / step_bytes
    return {
        "decode_tok_s": tok_s,
        "bytes_per_step": step_bytes,
        "roofline_tok_s": roofline,
        "roofline_share": tok_s / roofline,
    }
