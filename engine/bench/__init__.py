"""`infleet bench`: offline throughput of the bundled engine vs HF transformers.

Both run the same seeded requests on the same model in one process, one after the other;
the report has output and total tokens/s, TTFT and ITL percentiles, the ratio, and enough
context (device, torch, commit, command) to be a line in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from infleet.engine.args import DEFAULT_MODEL, parse_size
from infleet.engine.bench.workloads import WORKLOADS, parse_range


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infleet bench", description=__doc__.splitlines()[0])
    add = p.add_argument
    add("--model", default=DEFAULT_MODEL)
    add("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    add("--workload", default="mixed", choices=sorted(WORKLOADS))
    add("--num-prompts", type=int, default=32)
    add("--input-len", type=parse_range, default=(16, 256), metavar="LO:HI")
    add("--output-len", type=parse_range, default=(16, 256), metavar="LO:HI")
    add("--seed", type=int, default=0)
    add("--hf-batch-size", type=int, default=32, help="static batch size of the HF baseline")
    add("--no-hf", action="store_true", help="skip the HF transformers baseline")
    add("--repeat", type=int, default=1, help="alternate both runs N times, keep the best of each")
    add("--max-num-seqs", type=int, default=256)
    add("--max-num-batched-tokens", type=int, default=2048)
    add("--kv-cache-memory", type=parse_size, default=None, metavar="SIZE")
    add("--tensor-parallel-size", type=int, default=1, help="ranks (gloo on CPU, NCCL on CUDA)")
    add("--pipeline-parallel-size", type=int, default=1, help="stages (one rank each)")
    add("--enable-expert-parallel", action="store_true", help="MoE experts spread over the ranks")
    add(
        "--out", default=None, metavar="FILE", help="JSON report path (default bench-WORKLOAD.json)"
    )
    return p


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def main(argv: list[str]) -> int:
    if argv[:1] == ["gpu"]:  # GPU workloads vs transformers' continuous batching (docs/gpu.md)
        from infleet.engine.bench.gpu_cli import main as gpu_main

        return gpu_main(argv[1:])
    opts = build_parser().parse_args(argv)
    import torch

    from infleet.engine.args import EngineArgs
    from infleet.engine.bench.engine_run import run_engine
    from infleet.engine.llm_engine import LLMEngine

    engine_args = EngineArgs(
        model=opts.model,
        device=opts.device,
        dtype=opts.dtype,
        max_num_seqs=opts.max_num_seqs,
        max_num_batched_tokens=opts.max_num_batched_tokens,
        kv_cache_memory=opts.kv_cache_memory,
        tensor_parallel_size=opts.tensor_parallel_size,
        pipeline_parallel_size=opts.pipeline_parallel_size,
        enable_expert_parallel=opts.enable_expert_parallel,
        # Repetitions must not hit the blocks of earlier ones (random prompts share nothing).
        enable_prefix_caching=False,
    )
    engine = LLMEngine(engine_args)
    loaded = engine.loaded
    special = set(loaded.tokenizer.eos_token_ids) | {loaded.tokenizer.bos_token_id}
    vocab = [
        i
        for i in range(min(loaded.config.vocab_size, loaded.tokenizer.vocab_size))
        if i not in special
    ]
    requests = WORKLOADS[opts.workload](opts, vocab, random.Random(opts.seed))
    longest = max(len(r.prompt_token_ids) + r.output_len for r in requests)
    if longest > engine.max_model_len:
        print(
            f"infleet bench: a request needs {longest} tokens; the engine allows {engine.max_model_len}",
            file=sys.stderr,
        )
        return 2

    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "command": "infleet bench " + " ".join(argv),
        "model": opts.model,
        "device": _device_name(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "tensor_parallel_size": opts.tensor_parallel_size,
        "pipeline_parallel_size": opts.pipeline_parallel_size,
        "weight_bytes_rank0": sum(p.numel() * p.element_size() for p in loaded.model.parameters()),
        "workload": {
            "name": opts.workload,
            "num_prompts": opts.num_prompts,
            "input_len": list(opts.input_len),
            "output_len": list(opts.output_len),
            "seed": opts.seed,
        },
    }
    print(
        f"infleet bench: {len(requests)} requests ({opts.workload}) on {report['device']}",
        flush=True,
    )
    hf_model = None
    if not opts.no_hf:
        import transformers

        from infleet.engine.bench.hf_run import load_hf_model, run_hf

        report["transformers"] = transformers.__version__
        hf_model = load_hf_model(opts.model, loaded.device, loaded.dtype)
    # Alternating repetitions; the best of each counts (the one least disturbed by other
    # load on the machine), and every repetition's output tok/s is kept in the report.
    runs: dict[str, list[dict[str, Any]]] = {"engine": [], "hf": []}
    for _ in range(opts.repeat):
        runs["engine"].append(run_engine(engine, requests))
        print(_line("infleet", runs["engine"][-1]), flush=True)
        if hf_model is not None:
            runs["hf"].append(run_hf(hf_model, requests, opts.hf_batch_size))
            print(_line(f"hf (static batch {opts.hf_batch_size})", runs["hf"][-1]), flush=True)
    for name, results in runs.items():
        if results:
            report[name] = max(results, key=lambda s: s["output_tok_s"])
            report[f"{name}_runs_output_tok_s"] = [s["output_tok_s"] for s in results]
    if hf_model is not None:
        report["ratio_output_tok_s"] = round(
            report["engine"]["output_tok_s"] / report["hf"]["output_tok_s"], 2
        )
        print(f"ratio (output tok/s, infleet / hf): {report['ratio_output_tok_s']}x")
    out = Path(opts.out or f"bench-{opts.workload}.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    engine.core.shutdown()  # tensor / pipeline parallel: the other ranks stop with it
    return 0


def _line(name: str, s: dict[str, Any]) -> str:
    return (
        f"{name:>24}: {s['output_tok_s']:8.1f} output tok/s  {s['total_tok_s']:8.1f} total tok/s  "
        f"TTFT p50/p99 {s['ttft_p50_s']:.3f}/{s['ttft_p99_s']:.3f} s  ITL p50/p99 {s['itl_p50_s']:.4f}/{s['itl_p99_s']:.4f} s"
    )
