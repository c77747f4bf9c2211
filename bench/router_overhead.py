"""Router overhead: the latency the router adds per request, and its CPU cost per request.

    .venv/bin/python bench/router_overhead.py --requests 3000 --json out.json

Three processes: a stub engine (aiohttp; answers a chat completion at once, or streams
16 SSE chunks), the real `infleet router` pinned to one core, and this driver on the
other cores. The driver sends the same request straight to the stub and through the
router, alternating one by one over one keep-alive connection each, so both see the same
machine noise; added latency = routed - direct, per pair, beside the noise floor (a second
direct request minus the first). The body is a chat request with
a 2 KiB system prompt (8 prefix keys to hash and look up). Then it keeps `--concurrency`
requests in flight through the router for `--seconds` and reads the router's CPU time
from /proc: requests/s, and CPU per request (1 / that is what one core can route).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from infleet.engine.bench.stats import percentile

REPO = Path(__file__).resolve().parent.parent
INFLEET = str(Path(sys.executable).parent / "infleet")
SYSTEM = "You are the support assistant of a large online shop. " * 38  # ~2 KiB
ANSWER = {
    "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": "stub",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Your order ships tomorrow."}}],
    "usage": {"prompt_tokens": 520, "completion_tokens": 6, "total_tokens": 526},
}  # fmt: skip
CHUNK = b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok"}}]}\n\n'


def stub_main(port: int) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(ANSWER)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(16):
            await resp.write(CHUNK)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_get("/health", health)
    print("ready", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def body(n: int, stream: bool) -> bytes:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Where is my order {n}?"}]  # fmt: skip
    return json.dumps({"model": "stub", "messages": messages, "stream": stream}).encode()


async def one(session: aiohttp.ClientSession, url: str, data: bytes) -> float:
    start = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", data=data) as resp:
        await resp.read()
        assert resp.status == 200, resp.status
    return time.perf_counter() - start


async def latency(direct: str, routed: str, n: int, stream: bool, warmup: int) -> dict[str, float]:
    """Triples direct, routed, direct again: routed - direct is what the router adds;
    direct again - direct is the machine's own noise between two identical requests."""
    added, plain, noise = [], [], []
    async with aiohttp.ClientSession() as a, aiohttp.ClientSession() as b:
        for i in range(n + warmup):  # the first ones warm up connections and caches
            data = body(i % 64, stream)
            d = await one(a, direct, data)
            r = await one(b, routed, data)
            again = await one(a, direct, data)
            if i >= warmup:
                plain.append(d)
                added.append(r - d)
                noise.append(again - d)
    ms = 1000
    out = {"direct_p50_ms": round(percentile(plain, 50) * ms, 3)}
    for q in (50, 90, 99):
        out[f"added_p{q}_ms"] = round(percentile(added, q) * ms, 3)
        out[f"noise_p{q}_ms"] = round(percentile(noise, q) * ms, 3)
    return out


async def wait_ready(routed: str) -> None:
    """Until the router's first health poll has found the stub."""
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            async with session.get(routed + "/health") as resp:
                if (await resp.json())["ready_replicas"]:
                    return
            await asyncio.sleep(0.02)
    raise RuntimeError("the router never saw the stub ready")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(routed: str, pid: int, concurrency: int, seconds: float) -> dict[str, float]:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await one(session, routed, body(k, False))
            done += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - t0
    return {
        "requests_per_s": round(done / wall, 1),
        "router_cpu_share": round(cpu / wall, 3),
        "router_cpu_us_per_request": round(cpu / done * 1e6, 1),
        "one_core_capacity_rps": round(done / cpu, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stub", type=int, help=argparse.SUPPRESS)  # internal: run the stub
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=200, help="requests not counted")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--router-core", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if args.stub:
        stub_main(args.stub)
        return 0
    cores = os.sched_getaffinity(0)
    pin = len(cores) > 1 and args.router_core in cores
    if pin:  # the driver and the stub stay off the router's core
        os.sched_setaffinity(0, cores - {args.router_core})
    port = 18000 + os.getpid() % 1000
    stub = subprocess.Popen(
        [sys.executable, __file__, "--stub", str(port)], stdout=subprocess.PIPE, text=True
    )
    assert stub.stdout is not None and stub.stdout.readline().strip() == "ready"
    direct = f"http://127.0.0.1:{port}"
    router = subprocess.Popen(
        [INFLEET, "router", "--model", "stub", "--replica", direct, "--host", "127.0.0.1", "--port", "0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if pin:
        os.sched_setaffinity(router.pid, {args.router_core})
    assert router.stderr is not None
    routed = ""
    for line in router.stderr:
        if found := re.search(r"routing \S+ at (http://\S+)/v1", line):
            routed = found.group(1)
            break
    try:
        asyncio.run(wait_ready(routed))
        result = {
            "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip(),
            "date": time.strftime("%Y-%m-%d"),
            "router_pinned": pin,
            "requests": args.requests,
            "whole": asyncio.run(latency(direct, routed, args.requests, False, args.warmup)),
            "streamed_16_chunks": asyncio.run(
                latency(direct, routed, args.requests, True, args.warmup)
            ),
            "throughput": asyncio.run(
                throughput(routed, router.pid, args.concurrency, args.seconds)
            ),
        }
    finally:
        router.terminate()
        stub.terminate()
        router.wait(30)
        stub.wait(30)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
