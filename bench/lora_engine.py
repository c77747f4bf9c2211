"""Multi-LoRA serving throughput, end to end in the bundled engine (issue 14's benchmark).

The same requests (random prompts, greedy, a fixed number of output tokens each) run
through one in-process engine per case, all in one run: the base model alone (LoRA off),
then the requests spread round-robin over 1 / 4 / 16 random adapters (rank 16, q/k/v/o
and gate/up/down of every layer; `--max-loras` slots). Reported: output tokens per second
of the whole run (first request added to last token) and its loss against the base.

    OMP_NUM_THREADS=2 .venv/bin/python bench/lora_engine.py                 # CPU, SmolLM2
    python3 bench/lora_engine.py --model /models/Llama-3.1-8B-Instruct --device cuda \
        --dtype bfloat16 --requests 1024 --adapters 8 64 512 --max-loras 64 \
        --max-cpu-loras 256 --prompt-len 256 --output-len 128
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from infleet.engine.args import EngineArgs
from infleet.engine.core.lora_state import base_shape_of
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import load_model
from infleet.engine.messages import AdapterRef, SamplingParams
from infleet.lora.base_model import BaseModelShape

RANK = 16


def write_adapter(root: Path, shape: BaseModelShape, seed: int) -> Path:
    """A random PEFT adapter on every module of every layer (peft's tensor names)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(shape.num_layers):
        for linear in shape.linears:
            where = "self_attn" if linear.name in ("qkv_proj", "o_proj") else "mlp"
            for module, out in linear.parts:
                prefix = f"base_model.model.model.layers.{layer}.{where}.{module}"
                a = rng.standard_normal((RANK, linear.in_features), dtype=np.float32) * 0.01
                b = rng.standard_normal((out, RANK), dtype=np.float32) * 0.01
                tensors[f"{prefix}.lora_A.weight"], tensors[f"{prefix}.lora_B.weight"] = a, b
    path = root / f"adapter-{seed}"
    path.mkdir()
    save_file(tensors, str(path / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": 32,
              "target_modules": list(shape.module_names)}  # fmt: skip
    (path / "adapter_config.json").write_text(json.dumps(config))
    return path


def run_case(engine: LLMEngine, prompts: list[list[int]], refs: list, output_len: int) -> float:
    """Output tokens per second over the whole batch of requests."""
    params = SamplingParams(max_tokens=output_len, temperature=0.0, ignore_eos=True)
    start = time.perf_counter()
    for i, prompt in enumerate(prompts):
        engine.add_request(f"r{i}", prompt, params, lora=refs[i % len(refs)] if refs else None)
    tokens = 0
    while engine.has_unfinished():
        tokens += sum(len(out.token_ids) for out in engine.step())
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--adapters", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-loras", type=int, default=16)
    parser.add_argument("--max-cpu-loras", type=int, default=None)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--max-num-seqs", type=int, default=128)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat every case, in turn (load drifts)"
    )
    args = parser.parse_args()

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    shape = base_shape_of(loaded.config)
    rng = random.Random(0)
    vocab = loaded.config.vocab_size
    prompts = [[rng.randrange(100, vocab) for _ in range(args.prompt_len)]
               for _ in range(args.requests)]  # fmt: skip
    common = dict(model=args.model, device=args.device, dtype=args.dtype,
                  max_num_seqs=args.max_num_seqs, enable_prefix_caching=False)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        paths = [write_adapter(Path(tmp), shape, s) for s in range(max(args.adapters))]
        for r in range(args.rounds):
            print(f"round {r + 1}")
            run_round(args, loaded, prompts, paths, common)


def run_round(args, loaded, prompts: list[list[int]], paths: list[Path], common: dict) -> None:
    """The base model alone, then each adapter count, one after the other."""
    base = run_case(LLMEngine(EngineArgs(**common), loaded), prompts, [], args.output_len)
    print(f"base model alone: {base:.1f} output tok/s")
    for n in args.adapters:
        refs = [AdapterRef(f"a{i}", str(paths[i]), i + 1) for i in range(n)]
        slots = min(args.max_loras, n)
        lora_args = EngineArgs(
            **common, enable_lora=True, max_lora_rank=RANK, max_loras=slots,
            max_cpu_loras=args.max_cpu_loras or n,
        )  # fmt: skip
        tps = run_case(LLMEngine(lora_args, loaded), prompts, refs, args.output_len)
        print(
            f"{n:4d} adapter(s), max_loras {slots}: {tps:.1f} output tok/s "
            f"({100 * (tps / base - 1):+.1f} % vs base)"
        )


if __name__ == "__main__":
    main()
