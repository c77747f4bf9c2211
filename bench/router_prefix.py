"""Prefix-heavy multi-tenant load: the router against plain Service routing, in one run.

    .venv/bin/python bench/router_prefix.py --tenants 8 --turns 4 --json out.json

`--replicas` bundled engines (`infleet serve`, SmolLM2-135M on CPU; 2 by default) and
the real `infleet router` in front of them (static replicas: the engines publish their
state, so the router follows their caches and load). Each tenant has its own long system prompt (~1.6 KiB,
~350 tokens) and holds a conversation of `--turns` turns that re-sends its history;
`--concurrency` tenants talk at once. The same workload (fresh prompts, so neither phase
warms the other's cache) runs twice: "plain", each request to a replica picked at random
(kube-proxy's iptables mode, which a plain Service gets), then "router", every request
through the router. Per phase: the engines' prefix-cache hit rate (hit / queried prompt
tokens, from their `infleet:prefix_cache_*` counters) and time to first token, measured
by the client on streamed answers (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infleet.engine.bench.stats import percentile
from tests.router.processes import Launched, launch, run_router

MODEL = "smollm2-135m-instruct"
FACTS = "Policy {t}-{i}: orders of category {i} ship within {d} days and may be returned."


def system_prompt(tenant: int, phase: str) -> str:
    facts = " ".join(FACTS.format(t=tenant, i=i, d=i % 5 + 1) for i in range(20))
    return f"[{phase}] You are the assistant of shop {tenant}. {facts}"


def counters(engines: list[Launched]) -> tuple[float, float]:
    hits = queries = 0.0
    for engine in engines:
        text = httpx.get(engine.url + "/metrics").text
        for name, value in re.findall(
            r"^infleet:prefix_cache_(\w+)_total\{[^}]*\} (\S+)$", text, re.M
        ):
            if name == "hits":
                hits += float(value)
            elif name == "queries":
                queries += float(value)
    return hits, queries


async def ask(client: httpx.AsyncClient, url: str, messages: list[dict]) -> tuple[float, str]:
    """(time to first token, the answer) of one streamed chat completion."""
    body = {"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0,
            "stream": True}  # fmt: skip
    start, first, text = time.perf_counter(), None, []
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if delta:
                first = first or time.perf_counter() - start
                text.append(delta)
    return (first or time.perf_counter() - start), "".join(text)


async def phase(
    urls, tenants: int, turns: int, concurrency: int, name: str, seed: int
) -> list[float]:
    pick = random.Random(seed)
    gate = asyncio.Semaphore(concurrency)
    ttfts: list[float] = []

    async def conversation(tenant: int) -> None:
        messages = [{"role": "system", "content": system_prompt(tenant, name)}]
        for turn in range(turns):
            messages.append({"role": "user", "content": f"Question {turn}: when does it ship?"})
            async with gate, httpx.AsyncClient(timeout=600) as client:  # a connection each
                ttft, answer = await ask(client, pick.choice(urls), messages)
            ttfts.append(ttft)
            messages.append({"role": "assistant", "content": answer})

    await asyncio.gather(*(conversation(t) for t in range(tenants)))
    return ttfts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tenants", type=int, default=8)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--kv-cache-memory", default="1GiB", help="each engine's KV cache")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    serve = ["serve", "--port", "0", "--device", "cpu", "--shutdown-grace-seconds", "5",
             "--kv-cache-memory", args.kv_cache_memory]  # fmt: skip
    engines = [launch(serve, r"serving \S+ at (http://\S+)/v1") for _ in range(args.replicas)]
    router = run_router("--model", MODEL, *(a for e in engines for a in ("--replica", e.url)))
    results = {}
    try:
        time.sleep(2)  # the router follows both engines' state
        for name, urls in (("plain", [e.url for e in engines]), ("router", [router.url])):
            before = counters(engines)
            ttfts = asyncio.run(phase(urls, args.tenants, args.turns, args.concurrency, name, 1))
            after = counters(engines)
            hits, queries = after[0] - before[0], after[1] - before[1]
            results[name] = {
                "requests": len(ttfts),
                "hit_rate": round(hits / max(queries, 1.0), 3),
                "ttft_p50_ms": round(1000 * percentile(ttfts, 50), 1),
                "ttft_p99_ms": round(1000 * percentile(ttfts, 99), 1),
            }
            print(name, results[name], flush=True)
    finally:
        for process in (router, *engines):
            process.stop()
    results["machine"] = {"arch": platform.machine(), "cpus": os.cpu_count()}
    results["args"] = vars(args) | {"json": str(args.json)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
