"""Tiny random checkpoints with peft adapters, and their reference tokens: the unmerged
PeftModel's greedy generation in float32, per (adapter or base, prompt).

One case per supported architecture; MoE models take adapters on attention only (their
experts have none in the engine), dense models the full MIXED set (ranks 2-16, rsLoRA on
and off, attention-only and attention + MLP, rank/alpha patterns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from infleet.engine.args import EngineArgs
from infleet.engine.llm_engine import LLMEngine
from infleet.engine.loader import LoadedModel, load_model
from infleet.engine.messages import AdapterRef, SamplingParams
from tests.engine.tiny_models import PROMPTS, build_checkpoint
from tests.lora.peft_adapters import ATTENTION, MIXED, AdapterSpec, peft_model, save_adapters

MAX_NEW = 12
GREEDY = SamplingParams(max_tokens=MAX_NEW, temperature=0.0, ignore_eos=True)
MOE = dict(num_experts_per_tok=2, intermediate_size=96)
ATTENTION_ONLY = (
    AdapterSpec("attn-r4", 4, 8, ATTENTION),
    AdapterSpec("qv-r8-rslora", 8, 16, ("q_proj", "v_proj"), rslora=True),
)
CASES = {
    "llama": ("llama", {}, MIXED),
    "qwen2": ("qwen2", {}, MIXED),
    "qwen3": ("qwen3", {"head_dim": 32}, MIXED),
    "mistral": ("mistral", {}, MIXED),
    "mixtral": ("mixtral", dict(MOE, num_local_experts=4), ATTENTION_ONLY),
    "qwen2_moe": (
        "qwen2_moe",
        dict(MOE, num_experts=4, moe_intermediate_size=32, shared_expert_intermediate_size=64),
        ATTENTION_ONLY,
    ),
    "qwen3_moe": ("qwen3_moe", dict(MOE, num_experts=4, moe_intermediate_size=32), ATTENTION_ONLY),
}


@dataclass
class Case:
    loaded: LoadedModel
    refs: dict[str | None, AdapterRef | None]  # adapter name (None: base) -> its ref
    prompts: list[list[int]]
    expected: dict[tuple[str | None, int], list[int]]  # (adapter, prompt index) -> tokens


def build_case(name: str, root: Path) -> Case:
    import transformers

    arch, overrides, specs = CASES[name]
    path = build_checkpoint(root / "base", arch, seed=3, **overrides)
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = peft_model(hf, specs)
    dirs = save_adapters(model, specs, root)
    loaded = load_model(str(path), device="cpu", dtype="float32")
    prompts = [loaded.tokenizer.encode(p) for p in PROMPTS]
    expected = {}
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([prompt])
        for spec in specs:
            model.set_adapter(spec.name)
            expected[spec.name, i] = _generate(model, ids)
        with model.disable_adapter():
            expected[None, i] = _generate(model, ids)
    refs: dict[str | None, AdapterRef | None] = {None: None}
    for n, spec in enumerate(specs):
        refs[spec.name] = AdapterRef(spec.name, str(dirs[spec.name]), id=n + 1)
    return Case(loaded, refs, prompts, expected)


def _generate(model, ids: torch.Tensor) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=None,
            pad_token_id=0,
        )  # fmt: skip
    return out[0, ids.shape[1] :].tolist()


def lora_engine(case: Case, **kw) -> LLMEngine:
    args = dict(
        model="tiny", block_size=4, num_kv_blocks=256, enable_lora=True, max_loras=4,
        max_lora_rank=16,
    )  # fmt: skip
    args.update(kw)
    return LLMEngine(EngineArgs(**args), case.loaded)
