"""Structured-output overhead on CPU: SmolLM2, N concurrent chat requests with a JSON
schema vs the same requests unconstrained, tokens/s in one run.

    .venv/bin/python bench/structured_overhead.py --requests 64 --json out.json

In-process (`LLMEngine`, the engine core plus output processing, no HTTP), so the figure
is the engine's own. Both modes sample at temperature 0.8 with the same seeds and prompt;
the unconstrained requests may stop at eos or run to `--max-tokens`. Reported per mode:
generated tokens, wall seconds, tokens/s, steps, and for the schema run the host time
spent filling grammar masks (the constraint's own cost) and the share of wall time it is.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.messages import SamplingParams, StructuredSpec
from infleet.engine.structured import constraint

REPO = Path(__file__).resolve().parent.parent
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "member": {"type": "boolean"},
        "role": {"enum": ["admin", "user", "guest"]},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 10},
                "zip": {"type": "integer", "minimum": 0, "maximum": 99999},
            },
            "required": ["city", "zip"],
        },
    },
    "required": ["name", "age", "member", "role", "skills", "address"],
}


def run(engine: LLMEngine, prompt: list[int], params: list[SamplingParams]) -> dict:
    fill = [0.0]
    original = constraint.GrammarConstraint.fill_bitmask

    def timed(self, bitmask, row):  # the constraint's host cost, measured in place
        t = time.perf_counter()
        original(self, bitmask, row)
        fill[0] += time.perf_counter() - t

    constraint.GrammarConstraint.fill_bitmask = timed
    try:
        start = time.perf_counter()
        for i, p in enumerate(params):
            engine.add_request(f"r{i}", prompt, p)
        tokens, steps, finish = 0, 0, {}
        while engine.has_unfinished():
            steps += 1
            for out in engine.step():
                tokens += len(out.token_ids)
                if out.finished:
                    finish[out.finish_reason] = finish.get(out.finish_reason, 0) + 1
        wall = time.perf_counter() - start
    finally:
        constraint.GrammarConstraint.fill_bitmask = original
    return {
        "tokens": tokens, "seconds": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
        "steps": steps, "finish": finish, "mask_fill_s": round(fill[0], 3),
        "mask_fill_share": round(fill[0] / wall, 4),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--async-scheduling", action=argparse.BooleanOptionalAction, default=True,
        help="the engine's flag: constrained rows skip a step under it (no token feedback)",
    )  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    engine = LLMEngine(
        EngineArgs(
            device="cpu", kv_cache_memory=512 << 20, max_model_len=1024,
            async_scheduling=args.async_scheduling,
        )
    )  # fmt: skip
    messages = [{"role": "user", "content": "Describe a person as JSON."}]
    text = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    prompt = engine.tokenizer.encode(text, add_special_tokens=False)
    spec = StructuredSpec("json_schema", json.dumps(SCHEMA))

    def params(structured: StructuredSpec | None) -> list[SamplingParams]:
        return [
            SamplingParams(
                max_tokens=args.max_tokens, temperature=0.8, seed=i, structured=structured
            )
            for i in range(args.requests)
        ]

    run(engine, prompt, params(None)[:4])  # warm-up: first-step costs, allocator
    result = {
        "unconstrained": run(engine, prompt, params(None)),
        "json_schema": run(engine, prompt, params(spec)),
    }
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    result["meta"] = {
        "requests": args.requests, "max_tokens": args.max_tokens, "commit": commit,
        "async_scheduling": args.async_scheduling,
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
