"""Quality of quantized weights on a real model: perplexity on a fixed English text that
ships with Python (`pydoc_data.topics`, the help() texts) and greedy agreement with the
reference, per weight format.

    python -m infleet.engine.bench.quant_quality --tokens 20000 --prompts 50

The reference is the model as loaded without --quantization (SmolLM2's GGUF is Q4_1:
its dequantized weights are the reference, and fp8/fp4 re-quantize those). Perplexity is
over non-overlapping windows (each window's first token is context only).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

from infleet.engine.attention.context import reset_context, set_context
from infleet.engine.core.runner import ModelRunner, SeqSlice
from infleet.engine.loader import DEFAULT_MODEL, LoadedModel, load_model
from infleet.engine.quantization.apply import weight_bytes


def corpus_tokens(loaded: LoadedModel, count: int) -> list[int]:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) < count:
        raise ValueError(f"pydoc_data.topics has {len(ids)} tokens, fewer than {count}")
    return ids[:count]


@torch.inference_mode()
def perplexity(runner: ModelRunner, tokens: list[int], window: int) -> float:
    nll, predicted = 0.0, 0
    blocks = list(range(-(-window // runner.block_size)))
    for start in range(0, len(tokens) - 1, window):
        chunk = tokens[start : start + window]
        if len(chunk) < 2:
            break
        input_ids, ctx = runner.prepare([SeqSlice(chunk, 0, blocks)])
        set_context(ctx)
        try:
            logits = runner.model.compute_logits(runner.model(input_ids, ctx.positions)).float()
        finally:
            reset_context()
        target = torch.tensor(chunk[1:], device=logits.device)
        nll += F.cross_entropy(logits[:-1], target, reduction="sum").item()
        predicted += len(chunk) - 1
    return math.exp(nll / predicted)


@torch.inference_mode()
def greedy(runner: ModelRunner, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """All prompts in one batch: one prefill step, then `max_new - 1` decode steps."""
    per_seq = -(-(max(map(len, prompts)) + max_new) // runner.block_size)
    tables = [list(range(i * per_seq, (i + 1) * per_seq)) for i in range(len(prompts))]
    out = [[] for _ in prompts]
    batch = [SeqSlice(p, 0, t) for p, t in zip(prompts, tables, strict=True)]
    for _ in range(max_new):
        picks = runner.forward(batch).argmax(-1).tolist()
        batch = []
        for i, (prompt, pick) in enumerate(zip(prompts, picks, strict=True)):
            out[i].append(pick)
            batch.append(SeqSlice([pick], len(prompt) + len(out[i]) - 1, tables[i]))
    return out


def agreement(reference: list[list[int]], other: list[list[int]]) -> float:
    """Mean fraction of each continuation equal to the reference's before they diverge."""
    total = 0.0
    for ref, got in zip(reference, other, strict=True):
        same = next((i for i, (a, b) in enumerate(zip(ref, got, strict=True)) if a != b), len(ref))
        total += same / len(ref)
    return total / len(reference)


def decode_tok_s(runner: ModelRunner, prompt: list[int], steps: int) -> float:
    start = time.perf_counter()
    greedy(runner, [prompt], steps)
    return steps / (time.perf_counter() - start)


FORMATS = ("none", "fp8", "fp4")


def measure(fmt: str, model: str, tokens: int, prompts: int, max_new: int, window: int):
    """One weight format: (figures, the greedy continuations of the prompts)."""
    loaded = load_model(model, device="cpu", quantization=fmt)
    per_seq = -(-(max(window, 32 + max_new)) // 16)
    runner = ModelRunner(loaded, num_blocks=per_seq * max(prompts, 1), block_size=16)
    text = corpus_tokens(loaded, tokens)
    step = len(text) // prompts
    starts = [text[i * step : i * step + 32] for i in range(prompts)]  # 32-token prompts
    figures = {
        "perplexity": perplexity(runner, text, window),
        "weight_bytes": weight_bytes(loaded.model),
        "decode_tok_s": decode_tok_s(runner, starts[0], 16),
    }
    print(f"{fmt}: {figures}", file=sys.stderr, flush=True)  # long runs: progress as it comes
    return figures, greedy(runner, starts, max_new)


def run(model: str, tokens: int, prompts: int, max_new: int, window: int, jobs: int) -> dict:
    """Each format in its own process when `jobs` > 1 (they share nothing)."""
    args = [(fmt, model, tokens, prompts, max_new, window) for fmt in FORMATS]
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(min(jobs, len(FORMATS))) as pool:
            measured = pool.starmap(measure, args)
    else:
        measured = [measure(*a) for a in args]
    results = {fmt: figures for fmt, (figures, _) in zip(FORMATS, measured, strict=True)}
    reference, base = measured[0][1], results["none"]["perplexity"]
    for figures, outputs in measured:
        figures["greedy_agreement"] = agreement(reference, outputs)
        figures["perplexity_vs_reference"] = figures["perplexity"] / base - 1
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--tokens", type=int, default=20000)
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--max-new", type=int, default=16)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--jobs", type=int, default=1, help="formats measured in parallel")
    a = p.parse_args(argv)
    results = run(a.model, a.tokens, a.prompts, a.max_new, a.window, a.jobs)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
