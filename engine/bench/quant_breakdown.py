"""Where quantized weights lose quality: perplexity with one source of rounding at a time,
on the reference model loaded once.

    python -m infleet.engine.bench.quant_breakdown --tokens 20000

quant_quality measures the formats as the engine serves them; this splits their loss:
FP8's weight rounding without its activation rounding (W8A16) and the reverse, and FP4
on one kind of linear layer at a time (qkv, o, gate/up, down). Each variant rounds the
float weights in place through the engine's own quantizers (`quantize_rows`,
`quantize_nvfp4`, one packed part at a time as the loader does) and dequantizes them, and
rounds each linear layer's input per token for the activation variants. That is the
engine's arithmetic up to fp32 summation order (tests/engine/test_quant_quality.py checks
it against the quantized layers).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from infleet.engine.bench.quant_quality import corpus_tokens, perplexity
from infleet.engine.core.runner import ModelRunner
from infleet.engine.layers.linear import Linear
from infleet.engine.loader import DEFAULT_MODEL, load_model
from infleet.engine.quantization.fp4 import dequantize_nvfp4, quantize_nvfp4
from infleet.engine.quantization.fp8 import quantize_rows

WeightRounding = Callable[[torch.Tensor, list[int]], torch.Tensor]


def fp8_weight(weight: torch.Tensor, shard_sizes: list[int]) -> torch.Tensor:
    """e4m3 per output row and back (rows are independent: packing does not matter)."""
    wq, scale = quantize_rows(weight)
    return (wq.float() * scale).to(weight.dtype)


def fp4_weight(weight: torch.Tensor, shard_sizes: list[int]) -> torch.Tensor:
    """NVFP4 per packed part (each its own global scale, as Fp4LinearMethod) and back."""
    parts = [dequantize_nvfp4(*quantize_nvfp4(p)) for p in weight.split(shard_sizes)]
    return torch.cat(parts).to(weight.dtype)


def fp8_activation(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
    """Forward pre-hook: the layer's input rounded per token to e4m3 and back."""
    x = args[0]
    xq, scale = quantize_rows(x.reshape(-1, x.shape[-1]))
    return ((xq.float() * scale).to(x.dtype).view_as(x),)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    weight: WeightRounding | None
    activation: bool
    kinds: frozenset[str] | None = None  # last name part of the layers it rounds; None: all


KINDS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
VARIANTS = (
    Variant("fp8 W8A8", fp8_weight, True),
    Variant("fp8 weights only (W8A16)", fp8_weight, False),
    Variant("fp8 activations only", None, True),
    Variant("fp4 W4A16", fp4_weight, False),
    *(Variant(f"fp4 {kind} only", fp4_weight, False, frozenset({kind})) for kind in KINDS),
)


def quantized_layers(model: nn.Module) -> list[tuple[str, Linear]]:
    """The linear layers `--quantization` rounds: all but the LM head (apply.py)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Linear) and n != "lm_head"]


def run(model: str, tokens: int, window: int) -> dict[str, dict[str, float]]:
    loaded = load_model(model, device="cpu", quantization="none")
    runner = ModelRunner(loaded, num_blocks=-(-window // 16), block_size=16)
    text = corpus_tokens(loaded, tokens)
    layers = quantized_layers(loaded.model)
    floats = {name: layer.weight.data.clone() for name, layer in layers}
    base = perplexity(runner, text, window)
    results = {"reference": {"perplexity": base, "perplexity_vs_reference": 0.0}}
    for variant in VARIANTS:
        hooks = []
        for name, layer in layers:
            chosen = variant.kinds is None or name.rsplit(".", 1)[-1] in variant.kinds
            w = floats[name]
            if chosen and variant.weight is not None:
                w = variant.weight(w, layer.shard_sizes)
            layer.weight.data.copy_(w)
            if chosen and variant.activation:
                hooks.append(layer.register_forward_pre_hook(fp8_activation))
        ppl = perplexity(runner, text, window)
        for hook in hooks:
            hook.remove()
        results[variant.name] = {"perplexity": ppl, "perplexity_vs_reference": ppl / base - 1}
        print(f"{variant.name}: {results[variant.name]}", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--tokens", type=int, default=20000)
    p.add_argument("--window", type=int, default=512)
    a = p.parse_args(argv)
    print(json.dumps(run(a.model, a.tokens, a.window), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
