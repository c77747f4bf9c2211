"""`infleet bench gpu`: the GPU benchmarks, ours and transformers' side by side.

For each model shape: build transformers' model with random weights, load the same
tensors into our engine, run the chosen workloads on ours, free it, run them on
transformers' continuous batching, then write one JSON (device, versions, commit, every
figure) and print a table. `--scale tiny` runs the identical code path on toy shapes
(on a CPU in seconds), which is what CI checks.
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

import torch

from infleet.engine.args import EngineArgs, parse_size
from infleet.engine.bench import gpu_hf, gpu_ours
from infleet.engine.bench.gpu_models import SHAPES, hf_config, loaded_from_hf, random_hf_model
from infleet.engine.bench.gpu_models import weight_bytes as count_weight_bytes
from infleet.engine.bench.gpu_report import environment, format_table, summarize, write_json
from infleet.engine.bench.gpu_roofline import copy_bandwidth, decode_figures
from infleet.engine.bench.gpu_workloads import SCALES, Request, online_requests, workloads
from infleet.engine.model_config import config_from_hf

WORKLOADS = ("decode", "offline-mixed", "offline-fixed", "online")
ENGINES = ("ours", "hf")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infleet bench gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(SHAPES), help=f"comma list of {list(SHAPES)}")
    p.add_argument("--scale", choices=sorted(SCALES), default="full")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {WORKLOADS}")
    p.add_argument("--engines", default=",".join(ENGINES), help="ours, hf or both")
    p.add_argument("--rates", default=None, help="online request rates (req/s), comma list")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-num-batched-tokens", type=int, default=8192)
    p.add_argument("--kv-cache-dtype", choices=["auto", "fp8"], default="auto")
    p.add_argument(
        "--quantization", choices=["none", "fp8", "fp4"], default="none", help="our weights"
    )
    p.add_argument("--attention-backend", default="auto")
    p.add_argument(
        "--kv-cache-memory",
        type=parse_size,
        default=None,
        help="our KV pool (default: sized by the engine from free memory)",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results/gpu.json"))
    return p


def _choices(text: str, allowed: tuple[str, ...] | list[str], flag: str) -> list[str]:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in chosen if c not in allowed]
    if bad or not chosen:
        raise SystemExit(f"infleet bench gpu: {flag} {text!r}: choose from {', '.join(allowed)}")
    return chosen


def _requests(name: str, scale, vocab: int, rates: tuple[float, ...]) -> dict[str, list[Request]]:
    if name == "decode":
        prompt = [i % vocab for i in range(scale.decode_prompt)]
        return {"decode": [Request(prompt, scale.decode_tokens)]}
    if name == "online":
        return {f"online@{r:g}": online_requests(scale, vocab, r) for r in rates}
    return {name: workloads(scale, vocab)[name]}


def _run_ours(loaded, runs: dict[str, list[Request]], opts: argparse.Namespace):
    """Every workload on our engine; returns ({workload: traces+wall}, KV element bytes)."""
    args = EngineArgs(
        model=loaded.served_name, device=loaded.device.type, max_num_seqs=opts.max_num_seqs,
        max_num_batched_tokens=opts.max_num_batched_tokens, kv_cache_dtype=opts.kv_cache_dtype,
        attention_backend=opts.attention_backend, kv_cache_memory=opts.kv_cache_memory,
    )  # fmt: skip
    engine = gpu_ours.make_engine(loaded, args)
    gpu_ours.run(engine, [Request([1, 2, 3], 4), Request([4] * 40, 3)])  # compile, warm up
    done = {w: gpu_ours.run(engine, reqs) for w, reqs in runs.items()}
    return done, engine.runner.kv_cache.element_size()


def bench_model(name: str, opts: argparse.Namespace, device: torch.device) -> dict:
    scale = SCALES[opts.scale]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rates = tuple(float(r) for r in opts.rates.split(",")) if opts.rates else scale.online_rates
    config = hf_config(name, opts.scale)
    runs: dict[str, list[Request]] = {}
    for w in _choices(opts.workloads, WORKLOADS, "--workloads"):
        runs |= _requests(w, scale, config["vocab_size"], rates)
    engines = _choices(opts.engines, ENGINES, "--engines")
    hf_model = random_hf_model(config, device, dtype)
    done: dict[str, dict] = {}
    kv_element_bytes = {"hf": torch.empty(0, dtype=dtype).element_size()}
    loaded = loaded_from_hf(hf_model, config, name, opts.quantization)
    wbytes = count_weight_bytes(loaded.model)
    if "ours" in engines:
        done["ours"], kv_element_bytes["ours"] = _run_ours(loaded, runs, opts)
    del loaded  # and the engine with it: transformers gets the memory back
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if "hf" in engines:
        done["hf"] = {w: gpu_hf.run(hf_model, reqs) for w, reqs in runs.items()}
    del hf_model
    gc.collect()
    results = {w: {e: summarize(*done[e][w]) for e in done} for w in runs}
    report = {"weight_bytes": wbytes, "config": config, "workloads": results}
    report["quantization"] = opts.quantization
    if "decode" in runs:
        nbytes = (1 << 30) if device.type == "cuda" else (16 << 20)
        report["copy_bandwidth_bytes_s"] = bandwidth = copy_bandwidth(device, nbytes)
        for e in done:
            results["decode"][e] |= decode_figures(
                done[e]["decode"][0][0], config=config_from_hf(config), weight_bytes=wbytes,
                kv_element_bytes=kv_element_bytes[e], bandwidth=bandwidth,
            )  # fmt: skip
        if "ours" in done:
            report["decode_roofline_share"] = results["decode"]["ours"]["roofline_share"]
    if "offline-fixed" in runs and len(done) == 2:
        fixed = results["offline-fixed"]
        report["throughput_ratio_offline_fixed"] = (
            fixed["ours"]["total_tok_s"] / fixed["hf"]["total_tok_s"]
        )
    return report


def main(argv: list[str] | None = None) -> int:
    if argv and argv[0] == "kernels":  # `infleet bench gpu kernels`: the kernel sweep
        from infleet.engine.bench.gpu_kernels import main as kernels_main

        return kernels_main(argv[1:])
    opts = build_parser().parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = _choices(opts.models, list(SHAPES), "--models")
    report = {"environment": environment(device), "scale": opts.scale, "models": {}}
    for name in models:
        report["models"][name] = bench_model(name, opts, device)
        write_json(opts.out, report)  # after each model: a crash keeps what was measured
    print(format_table(report))
    print(f"\nwrote {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
