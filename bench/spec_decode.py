"""Speculative decoding, measured side by side in one run (docs/benchmarks.md).

1. Batch 1: each committed input-grounded prompt (bench/prompts/spec_grounded.jsonl) alone,
   greedy, without speculation and with each method given; decode tok/s (first token to
   last, so prefill is left out), acceptance, and whether the tokens are identical.
2. Concurrency: --concurrent requests (the prompts cycled) at once, speculation with the
   load switch against speculation off; output tok/s over the whole run.

    .venv/bin/python -m bench.spec_decode --max-tokens 64 --concurrent 64
    # GPU (Llama-3.1-8B-Instruct or any HF directory):
    .venv/bin/python -m bench.spec_decode --model /models/Llama-3.1-8B-Instruct --device cuda \\
        --max-tokens 256 --concurrent 64 \\
        --method '{"method": "ngram", "num_speculative_tokens": 4}' \\
        --method '{"method": "self_draft", "num_layers": 8, "num_speculative_tokens": 3}' \\
        --method '{"method": "draft_model", "model": "/models/Llama-3.2-1B-Instruct", "num_speculative_tokens": 4}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import load_model
from infleet.engine.messages import SamplingParams
from infleet.engine.spec.config import parse_speculative_config

PROMPTS = Path(__file__).parent / "prompts" / "spec_grounded.jsonl"


def grounded_prompts(tokenizer) -> list[list[int]]:
    return [
        tokenizer.encode(
            tokenizer.apply_chat_template(json.loads(line)["messages"]), add_special_tokens=False
        )
        for line in PROMPTS.read_text().splitlines()
    ]


def make_engine(args, loaded, spec: str | None) -> LLMEngine:
    kw = dict(model=args.model, device=args.device, max_num_seqs=max(args.concurrent, 1))
    if args.device == "cpu":
        kw["kv_cache_memory"] = 1 << 30
    if spec is not None:
        kw["speculative_config"] = parse_speculative_config(spec)
    return LLMEngine(EngineArgs(**kw), loaded)


def run(eng: LLMEngine, prompts: list[list[int]], params: SamplingParams):
    """All prompts at once; returns tokens per request, decode seconds, wall seconds."""
    for i, ids in enumerate(prompts):
        eng.add_request(str(i), ids, params)
    tokens: dict[str, list[int]] = {}
    start = time.perf_counter()
    first = None
    while eng.has_unfinished():
        for out in eng.step():
            tokens.setdefault(out.request_id, []).extend(out.token_ids)
            if first is None and out.token_ids:
                first = time.perf_counter()
    end = time.perf_counter()
    return tokens, end - (first or start), end - start


def batch_one(args, loaded, prompts, params) -> None:
    print("## batch 1, each prompt alone (decode tok/s from the first token on)")
    methods: list[str | None] = [None, *args.method]
    base: list[list[int]] = []
    for spec in methods:
        eng = make_engine(args, loaded, spec)
        decoded, seconds, same = 0, 0.0, True
        for i, ids in enumerate(prompts):
            tokens, decode_s, _ = run(eng, [ids], params)
            toks = tokens["0"]
            decoded += len(toks) - 1
            seconds += decode_s
            if spec is None:
                base.append(toks)
            else:
                same = same and toks == base[i]
        rate = decoded / seconds
        name = "none" if spec is None else json.loads(spec)["method"]
        line = f"{name:12s} decode {rate:7.2f} tok/s ({decoded} tokens, {seconds:.1f} s)"
        if spec is None:
            base_rate = rate
        else:
            s = eng.core.spec.stats
            acc = s.num_accepted_tokens / max(1, s.num_draft_tokens)
            line += (
                f"  speed-up {rate / base_rate:.2f}x  acceptance {acc:.2f}"
                f"  target forwards {s.num_target_forwards}  identical greedy: {same}"
            )
        print(line, flush=True)


def concurrent(args, loaded, prompts, params) -> None:
    n = args.concurrent
    many = [prompts[i % len(prompts)] for i in range(n)]
    print(f"## {n} concurrent requests (output tok/s over the run, prefill included)")
    base = None
    for spec in [None, args.method[0]]:
        eng = make_engine(args, loaded, spec)
        tokens, _, wall = run(eng, many, params)
        generated = sum(len(t) for t in tokens.values())
        name = "off" if spec is None else json.loads(spec)["method"] + " + load switch"
        line = f"{name:22s} {generated / wall:7.2f} tok/s ({generated} tokens, {wall:.1f} s)"
        if spec is None:
            base = tokens
        else:
            s = eng.core.spec.stats
            line += (
                f"  draft tokens {s.num_draft_tokens}, accepted {s.num_accepted_tokens}, "
                f"identical greedy: {tokens == base}"
            )
        print(line, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="builtin:smollm2-135m-instruct")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--concurrent", type=int, default=64, help="0: skip the concurrency run")
    p.add_argument("--limit", type=int, default=0, help="only the first N prompts at batch 1")
    p.add_argument(
        "--method",
        action="append",
        default=[],
        help="a --speculative-config JSON; repeat for several (default: ngram, k=4)",
    )
    args = p.parse_args()
    args.method = args.method or ['{"method": "ngram", "num_speculative_tokens": 4}']
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device=args.device)
    prompts = grounded_prompts(loaded.tokenizer)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    print(f"model {args.model}, device {args.device}, {len(prompts)} prompts, "
          f"max_tokens {args.max_tokens}, torch threads {args.threads}")  # fmt: skip
    batch_one(args, loaded, prompts[: args.limit or None], params)
    if args.concurrent:
        concurrent(args, loaded, prompts, params)


if __name__ == "__main__":
    main()
