"""`infleet bench gpu kernels`: check, then time, the paged-attention launch variants.

METHOD.md's loop in one call: every variant of every case is first compared with the
float64 reference on fresh random inputs (poisoned output, relative error), then timed
(`triton.testing.do_bench` medians on CUDA), and reported against the fewest bytes the
case must move (each K/V row, query and output once) over the device's measured copy
bandwidth. Cases are the Llama-3.1-8B attention shape (32 query heads, 8 KV heads of
128, bf16, 16-token pages); `--scale tiny` runs toy shapes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from infleet.engine.attention.triton_backend import num_sms
from infleet.engine.bench.gpu_roofline import copy_bandwidth
from infleet.engine.kernels.fp8 import FP8_DTYPE, quantize_fp8
from infleet.engine.kernels.paged_attention import LaunchConfig, choose_num_splits, paged_attention
from infleet.engine.kernels.reference import paged_attention_ref


@dataclass(slots=True)
class PagedBatch:
    q: torch.Tensor  # [T, Hq, D]
    k_cache: torch.Tensor  # [num_blocks, page, Hkv, D]
    v_cache: torch.Tensor
    cu_seqlens_q: torch.Tensor
    context_lens: torch.Tensor
    block_tables: torch.Tensor
    k_scale: torch.Tensor | None
    v_scale: torch.Tensor | None


def paged_batch(
    q_lens: list[int], context_lens: list[int], *, num_q_heads: int, num_kv_heads: int,
    head_dim: int, dtype: torch.dtype, kv_dtype: torch.dtype | None = None, page: int = 16,
    per_head_scales: bool = True, seed: int = 0, device: torch.device | str = "cpu",
) -> PagedBatch:  # fmt: skip
    """Random queries and caches; each sequence's blocks scattered over the pool (plus
    spare blocks of garbage nobody may read), tables padded with -1."""
    gen = torch.Generator().manual_seed(seed)
    kv_dtype = kv_dtype or dtype
    needed = [-(-n // page) for n in context_lens]
    num_blocks = sum(needed) + 3
    order = torch.randperm(num_blocks, generator=gen)
    tables = torch.full((len(q_lens), max(needed) + 1), -1, dtype=torch.int32)
    used = 0
    for s, n in enumerate(needed):
        tables[s, :n] = order[used : used + n]
        used += n
    shape = (num_blocks, page, num_kv_heads, head_dim)
    k, v = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    k_scale = v_scale = None
    if kv_dtype == FP8_DTYPE:
        heads = num_kv_heads if per_head_scales else 1
        k_scale = (torch.rand(heads, generator=gen) + 0.25).to(device)
        v_scale = (torch.rand(heads, generator=gen) + 0.25).to(device)
        k = quantize_fp8(k.flatten(0, 1).to(device) * 3, k_scale).view(shape)
        v = quantize_fp8(v.flatten(0, 1).to(device) * 3, v_scale).view(shape)
    cu = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(sum(q_lens), num_q_heads, head_dim, generator=gen)
    return PagedBatch(
        q.to(device=device, dtype=dtype), k.to(device=device, dtype=kv_dtype),
        v.to(device=device, dtype=kv_dtype), cu.to(device),
        torch.tensor(context_lens, dtype=torch.int32, device=device), tables.to(device),
        k_scale, v_scale,
    )  # fmt: skip


# name -> (q_lens, context_lens, kv dtype is fp8)
FULL_CASES = {
    "decode-b1-ctx4096": ([1], [4096], False),
    "decode-b64-ctx1024": ([1] * 64, [1024] * 64, False),
    "decode-b256-ctx1024": ([1] * 256, [1024] * 256, False),
    "decode-b64-ctx1024-fp8": ([1] * 64, [1024] * 64, True),
    "prefill-2048-after-2048": ([2048], [4096], False),
    "prefill-8x512": ([512] * 8, [512] * 8, False),
}
TINY_CASES = {"decode": ([1, 1], [40, 7], False), "mixed": ([1, 20], [37, 50], True)}
VARIANTS = [LaunchConfig(64, 4, 2), LaunchConfig(64, 4, 3), LaunchConfig(128, 4, 2),
            LaunchConfig(128, 8, 3), LaunchConfig(32, 4, 2)]  # fmt: skip


def _ideal_bytes(b: PagedBatch) -> int:
    kv_row = b.k_cache.shape[2] * b.k_cache.shape[3] * b.k_cache.element_size()
    return 2 * int(b.context_lens.sum()) * kv_row + 2 * b.q.numel() * b.q.element_size()


def _time(fn, device: torch.device) -> float:
    """Median seconds of `fn` (events on CUDA; one host-timed call elsewhere)."""
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") / 1e3
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_case(name: str, spec, shape: dict, variants, device, bandwidth: float) -> list[dict]:
    q_lens, ctx_lens, fp8 = spec
    b = paged_batch(q_lens, ctx_lens, **shape, kv_dtype=FP8_DTYPE if fp8 else None,
                    device=device)  # fmt: skip
    args = (b.q, b.k_cache, b.v_cache, b.cu_seqlens_q, b.context_lens, b.block_tables)
    scales = dict(k_scale=b.k_scale, v_scale=b.v_scale)
    ref = paged_attention_ref(b.q.double(), *args[1:], scale=0.088, compute_dtype=torch.float64,
                              **scales)  # fmt: skip
    sms = num_sms(device)  # the split choice the engine itself makes
    auto = 1
    if len(q_lens) == b.q.shape[0]:
        auto = choose_num_splits(len(q_lens) * b.k_cache.shape[2], max(ctx_lens), sms)
    rows = []
    for launch in variants:
        for splits in sorted({1, auto}):
            out = torch.full_like(b.q, float("nan"))

            def call(out=out, launch=launch, splits=splits):
                return paged_attention(*args, scale=0.088, num_splits=splits, out=out,
                                       launch=launch, **scales)  # fmt: skip

            call()
            err = ((out.double() - ref).norm() / ref.norm()).item()  # NaN if unwritten
            seconds = _time(call, device)
            gbs = _ideal_bytes(b) / seconds / 1e9
            rows.append({"case": name, "block_n": launch.block_n, "num_warps": launch.num_warps,
                         "num_stages": launch.num_stages, "splits": splits, "rel_error": err,
                         "us": seconds * 1e6, "GB_s": gbs,
                         "copy_bw_share": gbs * 1e9 / bandwidth})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="infleet bench gpu kernels", description=__doc__.split("\n")[0]
    )
    p.add_argument("--scale", choices=["full", "tiny"], default="full")
    p.add_argument("--out", type=Path, default=Path("bench-results/gpu-kernels.json"))
    opts = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    full = opts.scale == "full"
    shape = dict(num_q_heads=32, num_kv_heads=8, head_dim=128, dtype=torch.bfloat16)
    if not full:
        shape = dict(num_q_heads=4, num_kv_heads=2, head_dim=32, dtype=torch.float32)
    bandwidth = copy_bandwidth(device, (1 << 30) if device.type == "cuda" else (16 << 20))
    rows = []
    for name, spec in (FULL_CASES if full else TINY_CASES).items():
        rows += run_case(name, spec, shape, VARIANTS if full else VARIANTS[:1], device, bandwidth)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps({"device": str(device), "copy_bandwidth_bytes_s": bandwidth,
                                    "rows": rows}, indent=2) + "\n")  # fmt: skip
    print(f"{'case':<26} {'bn':>4} {'w':>2} {'st':>2} {'sp':>3} {'rel_err':>9} {'us':>9} "
          f"{'GB/s':>8} {'bw%':>6}")  # fmt: skip
    for r in rows:
        print(f"{r['case']:<26} {r['block_n']:>4} {r['num_warps']:>2} {r['num_stages']:>2} "
              f"{r['splits']:>3} {r['rel_error']:>9.2e} {r['us']:>9.1f} {r['GB_s']:>8.1f} "
              f"{100 * r['copy_bw_share']:>5.1f}%")  # fmt: skip
    print(f"copy bandwidth {bandwidth / 1e9:.0f} GB/s (read + write); wrote {opts.out}")
    bad = [r for r in rows if not r["rel_error"] < (1e-5 if not full else 1e-2)]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
