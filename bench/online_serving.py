"""Online serving on a real `infleet serve` (engine core in its own process), through the
`openai` SDK: Poisson arrivals at several rates, streaming completions, TTFT and ITL
percentiles, with async scheduling on and off.

    .venv/bin/python -m bench.online_serving --rates 0.5,1,2,inf --num-requests 64 \\
        --max-concurrency 64 --out bench-results/online.json

Each (async scheduling, rate) point starts a fresh server, sends `--num-requests`
seeded requests (random-word prompts of `--input-len` words, `--output-len` tokens with
EOS ignored) with exponential gaps of mean 1/rate, at most `--max-concurrency` open
streams, and records when each streamed chunk arrived. Prints one JSON object per point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openai

from infleet.engine.bench.stats import percentile
from infleet.engine.bench.workloads import parse_range

MODEL = "smollm2-135m-instruct"


def start_server(flags: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [str(Path(sys.executable).parent / "infleet"), "serve", "--port", "0", *flags]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"serving \S+ at (http://\S+)/v1", line)
        if m:
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, m.group(1)
    raise RuntimeError(f"infleet serve exited with {proc.wait()} before serving")


def workload(opts: argparse.Namespace) -> list[tuple[str, int]]:
    rng = random.Random(opts.seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 8))) for _ in range(2000)]
    out = []
    for _ in range(opts.num_requests):
        prompt = " ".join(rng.choices(words, k=rng.randint(*opts.input_len)))
        out.append((prompt, rng.randint(*opts.output_len)))
    return out


async def one_request(
    client: openai.AsyncOpenAI, prompt: str, max_tokens: int, gate: asyncio.Semaphore
) -> dict[str, Any]:
    async with gate:
        sent = time.monotonic()
        times: list[float] = []
        stream = await client.completions.create(
            model=MODEL,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                times.append(time.monotonic())
        return {"sent": sent, "times": times}


async def run_point(url: str, requests: list[tuple[str, int]], rate: float, opts) -> dict:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    gate = asyncio.Semaphore(opts.max_concurrency)
    rng = random.Random(opts.seed + 1)
    tasks = []
    start = time.monotonic()
    for prompt, max_tokens in requests:
        tasks.append(asyncio.create_task(one_request(client, prompt, max_tokens, gate)))
        if rate != float("inf"):  # inf: all at once, --max-concurrency streams open
            await asyncio.sleep(rng.expovariate(rate))
    results = await asyncio.gather(*tasks)
    wall = time.monotonic() - start
    ttft = [r["times"][0] - r["sent"] for r in results if r["times"]]
    itl = [b - a for r in results for a, b in zip(r["times"], r["times"][1:], strict=False)]
    chunks = sum(len(r["times"]) for r in results)
    return {
        "rate_req_s": rate,
        "requests": len(results),
        "wall_s": round(wall, 2),
        "output_chunks_per_s": round(chunks / wall, 2),
        "ttft_p50_s": round(percentile(ttft, 50), 3),
        "ttft_p99_s": round(percentile(ttft, 99), 3),
        "itl_p50_s": round(percentile(itl, 50), 4),
        "itl_p99_s": round(percentile(itl, 99), 4),
    }


async def main_async(opts: argparse.Namespace) -> list[dict[str, Any]]:
    requests = workload(opts)
    points = []
    for mode in opts.async_scheduling.split(","):
        flag = "--async-scheduling" if mode == "on" else "--no-async-scheduling"
        for rate in (float(r) for r in opts.rates.split(",")):
            proc, url = start_server([flag, "--kv-cache-memory", opts.kv_cache_memory])
            try:
                point = {"async_scheduling": mode, **await run_point(url, requests, rate, opts)}
            finally:
                proc.terminate()
                proc.wait(60)
            print(json.dumps(point), flush=True)
            points.append(point)
    return points


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="0.5,1,2,inf", help="request rates (req/s, inf: a burst)")
    p.add_argument("--num-requests", type=int, default=64)
    p.add_argument("--max-concurrency", type=int, default=64)
    p.add_argument("--input-len", type=parse_range, default=(16, 256), metavar="LO:HI")
    p.add_argument("--output-len", type=parse_range, default=(16, 128), metavar="LO:HI")
    p.add_argument("--async-scheduling", default="on,off", help="on, off or on,off")
    p.add_argument("--kv-cache-memory", default="512MiB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    opts = p.parse_args()
    points = asyncio.run(main_async(opts))
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(json.dumps({"argv": sys.argv, "points": points}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
