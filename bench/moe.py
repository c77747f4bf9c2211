"""Mixture-of-experts cost, two ways.

`engine`: a small random MoE (Mixtral-shaped: 8 experts, top-2) against a dense model of
the same active parameters (its MLP as wide as two experts), both through LLMEngine on
the same seeded requests in one run: output and total tokens/s, and the weights each holds.

`layer`: one layer's routed experts alone, the fused path (one grouped GEMM per
projection: torch `grouped_mm` on CPU, the Triton kernel on CUDA) against a Python loop
over the experts the batch hit (transformers' eager path), at several token counts.

    OMP_NUM_THREADS=1 .venv/bin/python bench/moe.py engine
    OMP_NUM_THREADS=1 .venv/bin/python bench/moe.py layer --shape small
    python3 bench/moe.py layer --device cuda --dtype bfloat16 --shape mixtral-8x7b qwen3-30b-a3b \
        --tokens 1 16 256 4096
"""

from __future__ import annotations

import argparse
import random
import time
from functools import partial

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from infleet.engine.layers.fused_moe import FusedMoE, route
from infleet.engine.model_config import ModelConfig
from infleet.engine.moe_config import MoEConfig

SHAPES = {  # hidden, expert intermediate, experts, top-k
    "small": (512, 704, 8, 2),
    "small-64x8": (512, 192, 64, 8),  # many narrow experts, as Qwen3-MoE
    "mixtral-8x7b": (4096, 14336, 8, 2),
    "qwen3-30b-a3b": (2048, 768, 128, 8),
}


def race(fns: list, device: torch.device, repeat: int) -> list[float]:
    """Best of `repeat` interleaved runs of each, in milliseconds."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[i] = min(best[i], (time.perf_counter() - start) * 1e3)
    return best


def expert_loop(x, w13, w2, weights, ids) -> torch.Tensor:
    """The peer: one Python iteration per expert hit (transformers' eager MoE)."""
    out = torch.zeros_like(x)
    for e in ids.unique().tolist():
        token, slot = torch.where(ids == e)
        gate, up = F.linear(x[token], w13[e]).chunk(2, dim=-1)
        y = F.linear(F.silu(gate) * up, w2[e]) * weights[token, slot, None]
        out.index_add_(0, token, y)
    return out


@torch.inference_mode()
def bench_layer(opts: argparse.Namespace) -> None:
    device, dtype = torch.device(opts.device), getattr(torch, opts.dtype)
    for shape in opts.shape:
        hidden, inter, num_experts, top_k = SHAPES[shape]
        experts = FusedMoE(num_experts, hidden, inter).to(device=device, dtype=dtype)
        for p in experts.parameters():
            p.normal_(0, hidden**-0.5)
        router = torch.randn(num_experts, hidden, device=device, dtype=dtype)
        print(f"{shape}: E={num_experts} top-{top_k} H={hidden} I={inter} {opts.dtype} {device}")
        for tokens in opts.tokens:
            x = torch.randn(tokens, hidden, device=device, dtype=dtype)
            weights, ids = route(x @ router.T, top_k, True, dtype)
            args = (x, experts.w13, experts.w2, weights, ids)
            fused, loop = race(
                [partial(experts, x, weights, ids), partial(expert_loop, *args)],
                device,
                opts.repeat,
            )
            print(
                f"  {tokens:>5} tokens: fused {fused:8.2f} ms  per-expert loop {loop:8.2f} ms  "
                f"({loop / fused:.2f}x)"
            )


def _random_model(config: ModelConfig, vocab: int):
    from infleet.engine.loader import LoadedModel
    from infleet.engine.models import build_model
    from infleet.engine.tokenizer import Tokenizer

    torch.manual_seed(0)
    model = build_model(config, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0) if name.endswith("norm.weight") else p.normal_(0, 0.02)
    backend = HFTokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tokenizer = Tokenizer(
        backend, bos_token=None, eos_token=None, eos_token_ids=set(), chat_template=None
    )
    device, dtype = torch.device("cpu"), torch.float32
    return LoadedModel(model, config, tokenizer, config.architecture, device, dtype)


def bench_engine(opts: argparse.Namespace) -> None:
    from infleet.engine.args import EngineArgs
    from infleet.engine.bench.engine_run import run_engine
    from infleet.engine.bench.workloads import BenchRequest
    from infleet.engine.llm_engine import LLMEngine
    from infleet.engine.models.weight_count import count_weights

    hidden, inter, num_experts, top_k = SHAPES["small"]
    vocab, layers = 2048, 4
    common = dict(
        vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=8, num_kv_heads=4,
        head_dim=hidden // 8, max_position_embeddings=1024, rms_norm_eps=1e-6, rope_theta=1e4,
    )  # fmt: skip
    moe = MoEConfig(num_experts, top_k, inter, True, (True,) * layers)
    configs = {
        f"MoE {num_experts} experts top-{top_k}": ModelConfig(
            architecture="mixtral", intermediate_size=inter, moe=moe, **common
        ),
        f"dense MLP {top_k * inter}": ModelConfig(
            architecture="mistral", intermediate_size=top_k * inter, **common
        ),
    }
    rng = random.Random(0)
    requests = [
        BenchRequest([rng.randrange(vocab) for _ in range(opts.input_len)], opts.output_len)
        for _ in range(opts.num_prompts)
    ]
    engines = {}
    for name, config in configs.items():
        loaded = _random_model(config, vocab)
        count = count_weights(loaded.model, config.moe.top_k if config.moe else 0)
        print(f"{name}: {count.describe()}")
        args = EngineArgs(model=name, enable_prefix_caching=False, kv_cache_memory=256 << 20)
        engines[name] = LLMEngine(args, loaded)
    best: dict[str, dict] = {}
    for _ in range(opts.repeat):  # alternate, keep each one's best (shared, noisy cores)
        for name, engine in engines.items():
            stats = run_engine(engine, requests)
            if name not in best or stats["output_tok_s"] > best[name]["output_tok_s"]:
                best[name] = stats
            print(f"  {name}: {stats['output_tok_s']:.1f} output tok/s", flush=True)
    print(
        f"{opts.num_prompts} requests, {opts.input_len} prompt + {opts.output_len} output "
        f"tokens each, fp32, {torch.get_num_threads()} thread(s); best of {opts.repeat}:"
    )
    for name, stats in best.items():
        print(
            f"  {name:>24}: {stats['output_tok_s']:7.1f} output tok/s  "
            f"{stats['total_tok_s']:7.1f} total tok/s"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mode", required=True)
    layer = sub.add_parser("layer")
    layer.add_argument("--shape", nargs="+", default=["small"], choices=sorted(SHAPES))
    layer.add_argument("--tokens", nargs="+", type=int, default=[1, 16, 256])
    layer.add_argument("--device", default="cpu")
    layer.add_argument("--dtype", default="float32")
    layer.add_argument("--repeat", type=int, default=5)
    engine = sub.add_parser("engine")
    engine.add_argument("--num-prompts", type=int, default=16)
    engine.add_argument("--input-len", type=int, default=128)
    engine.add_argument("--output-len", type=int, default=64)
    engine.add_argument("--repeat", type=int, default=2)
    opts = p.parse_args()
    bench_layer(opts) if opts.mode == "layer" else bench_engine(opts)


if __name__ == "__main__":
    main()
