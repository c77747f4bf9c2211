"""Cost of batched multi-LoRA in one decoder layer's linears, next to peft's mixed batch.

For a decoder layer of the chosen shape, times the four engine linears (packed q/k/v, o,
packed gate/up, down) alone and with the LoRA delta added for the same tokens spread
over 1 / 4 / 16 adapters of rank 16 (every token adapted), through `infleet.lora.apply`
(the torch path on CPU, the Triton kernels on CUDA). The peer, in the same run: peft's
`adapter_names=` mixed-batch forward over the same seven checkpoint modules (unpacked,
one Python loop per adapter), against its own base-only call.

    OMP_NUM_THREADS=1 .venv/bin/python bench/lora_layers.py --tokens 128 512
    python3 bench/lora_layers.py --shape llama3-8b --device cuda --dtype bfloat16 \
        --tokens 256 4096 --adapters 1 8 64 --max-loras 64 --no-peft
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from infleet.lora.apply import LinearLoRA, set_lora_batch
from infleet.lora.base_model import BaseModelShape
from infleet.lora.batch import LoRABatch
from infleet.lora.slots import DeviceSlots

SHAPES = {  # hidden, intermediate, q_size, kv_size
    "smollm2-135m": (576, 1536, 576, 192),
    "llama3-8b": (4096, 14336, 4096, 1024),
}
RANK = 16


def race(fns: list, device: torch.device, repeat: int) -> list[float]:
    """Best of `repeat` runs of each, in milliseconds, the runs interleaved so that load
    from other processes on a shared machine falls on all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best[i] = min(best[i], time.perf_counter() - start)
    return [b * 1e3 for b in best]


def ours(shape, tokens, adapters, max_loras, dtype, device):
    """(base linears, base linears + batched LoRA) as callables."""
    slots = DeviceSlots(shape, max_loras, RANK, dtype, device)
    for buffer in (*slots.a.values(), *slots.b.values()):
        buffer.normal_(0, 0.02)
    weights = [torch.randn(lin.out_features, lin.in_features, dtype=dtype, device=device) * 0.02
               for lin in shape.linears]  # fmt: skip
    xs = [torch.randn(tokens, lin.in_features, dtype=dtype, device=device) for lin in shape.linears]
    hooks = [LinearLoRA(slots, 0, lin.name) for lin in shape.linears]

    def base():
        for x, w in zip(xs, weights, strict=True):
            F.linear(x, w)

    def with_lora():
        set_lora_batch(LoRABatch.build([t % adapters for t in range(tokens)], max_loras, device))
        for x, w, hook in zip(xs, weights, hooks, strict=True):
            hook.apply(x, F.linear(x, w))
        set_lora_batch(None)

    with_lora()  # warm-up (Triton compiles here)
    return base, with_lora


def peft_peer(shape, tokens, adapters, dtype, device):
    """(peft base-only, peft mixed batch) as callables."""
    import peft
    from torch import nn

    modules = [(n, lin.in_features, size) for lin in shape.linears for n, size in lin.parts]
    layers = nn.ModuleDict({n: nn.Linear(i, o, bias=False) for n, i, o in modules})
    model = nn.Sequential(layers).to(device, dtype)
    config = peft.LoraConfig(r=RANK, target_modules=[n for n, _, _ in modules])
    wrapped = peft.inject_adapter_in_model(config, model, adapter_name="a0")
    for i in range(1, adapters):
        wrapped = peft.inject_adapter_in_model(config, wrapped, adapter_name=f"a{i}")
    xs = {n: torch.randn(tokens, 1, i, dtype=dtype, device=device) for n, i, _ in modules}
    mixed = [f"a{t % adapters}" for t in range(tokens)]
    base_only = ["__base__"] * tokens

    def run(names):
        with torch.no_grad():
            for n, _, _ in modules:
                wrapped[0][n](xs[n], adapter_names=names)

    return lambda: run(base_only), lambda: run(mixed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-loras", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-peft", action="store_true", help="skip the peft peer")
    args = parser.parse_args()
    hidden, inter, q, kv = SHAPES[args.shape]
    shape = BaseModelShape.decoder(
        hidden_size=hidden, num_layers=1, q_size=q, kv_size=kv, intermediate_size=inter
    )
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    print(f"{args.shape} {args.dtype} {args.device}, rank {RANK}, max_loras {args.max_loras},"
          f" torch threads {torch.get_num_threads()}; ms per layer (best of {args.repeat})")  # fmt: skip
    print(
        "| tokens | adapters | base | + LoRA (ours) | overhead | peft base | peft mixed | overhead |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for tokens in args.tokens:
        for n in args.adapters:
            fns = list(ours(shape, tokens, n, args.max_loras, dtype, device))
            if not args.no_peft:
                fns += peft_peer(shape, tokens, n, dtype, device)
            b, lo, pb, pm = [*race(fns, device, args.repeat), float("nan"), float("nan")][:4]
            print(f"| {tokens} | {n} | {b:.2f} | {lo:.2f} | {lo / b - 1:+.0%} "
                  f"| {pb:.2f} | {pm:.2f} | {pm / pb - 1:+.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
