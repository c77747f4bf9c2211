"""Throughput and latency figures from per-request token timestamps."""

from __future__ import annotations

import itertools
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(
    token_times: list[list[float]], num_prompt_tokens: int, start: float, end: float
) -> dict[str, Any]:
    """token_times[i]: when request i's useful output tokens appeared (all arrive at start)."""
    wall = end - start
    output = sum(len(t) for t in token_times)
    ttft = [t[0] - start for t in token_times if t]
    itl = [b - a for t in token_times for a, b in itertools.pairwise(t)]
    return {
        "requests": len(token_times),
        "prompt_tokens": num_prompt_tokens,
        "output_tokens": output,
        "wall_seconds": round(wall, 3),
        "output_tok_s": round(output / wall, 2),
        "total_tok_s": round((output + num_prompt_tokens) / wall, 2),
        "ttft_p50_s": round(percentile(ttft, 50), 4),
        "ttft_p99_s": round(percentile(ttft, 99), 4),
        "itl_p50_s": round(percentile(itl, 50), 4),
        "itl_p99_s": round(percentile(itl, 99), 4),
    }
