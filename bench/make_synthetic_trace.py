"""Writes autoscaler/simulator/synthetic_trace.csv: 40 minutes of requests in the Azure
LLM inference trace's columns (TIMESTAMP as seconds from the start, ContextTokens,
GeneratedTokens), seeded, so the file can be checked against its generator.

    .venv/bin/python -m bench.make_synthetic_trace

Arrivals are a Poisson process whose rate climbs from 3 to 12 req/s with a 10-minute
wave and two 3x spikes of 3 minutes; prompt and output lengths are lognormal, long
tailed like the Azure conversation trace (medians ~900 and ~180 tokens).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "autoscaler" / "simulator" / "synthetic_trace.csv"
DURATION_S = 40 * 60.0
SPIKES = ((800.0, 180.0), (1900.0, 180.0))  # start, length: 3x


def rate(t: float) -> float:
    base = 3.0 + 9.0 * t / DURATION_S
    base *= 1.0 + 0.3 * math.sin(2 * math.pi * t / 600.0)
    return base * (3.0 if any(s <= t < s + n for s, n in SPIKES) else 1.0)


def main() -> None:
    rng = random.Random(2024)
    top = max(rate(t) for t in range(int(DURATION_S)))
    rows, t = [], 0.0
    while True:  # thinning: a Poisson process at the top rate, kept with rate(t)/top
        t += rng.expovariate(top)
        if t >= DURATION_S:
            break
        if rng.random() < rate(t) / top:
            prompt = min(16_000, max(16, round(rng.lognormvariate(math.log(900), 1.0))))
            output = min(2048, max(1, round(rng.lognormvariate(math.log(180), 0.9))))
            rows.append(f"{t:.3f},{prompt},{output}")
    OUT.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    print(f"wrote {OUT} ({len(rows)} requests)")


if __name__ == "__main__":
    main()
