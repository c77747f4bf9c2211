"""Tiny random checkpoints built at test time, and greedy loops over them.

`build_checkpoint` writes a transformers directory (config, safetensors, tokenizer.json,
chat template) for one architecture; `runner_greedy` drives our ModelRunner through chunked
prefill and decode steps with several sequences per flat batch; `hf_greedy` is the
transformers reference. transformers is imported lazily: it is a test-only dependency.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from infleet.engine.runner import ModelRunner, SeqSlice

VOCAB_SIZE = 512
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_CORPUS = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
    "What is the capital of France? Paris is the capital and largest city of France.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))  # 5",
    "Paged attention stores keys and values in fixed-size blocks of sixteen tokens.",
    "Numbers like 12345, 3.14159 and 2026 appear; so do émigrés, naïve cafés and 東京.",
]
PROMPTS = [
    "The quick brown fox",
    "What is the capital of France? Paris is",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3)) and then the lazy dog sleeps",
]
# Per architecture: the transformers config class and the keyword overrides of each case.
SHAPE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    # Wider weights than the 0.02 default: peaked logits, so greedy picks never hinge on
    # float rounding between two implementations.
    initializer_range=0.3,
)


def build_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<|endoftext|>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return tok


def build_checkpoint(path: Path, arch: str, seed: int = 0, **overrides: Any) -> Path:
    """Save a random `arch` model (llama, qwen2, qwen3, mistral) + tokenizer under `path`."""
    import transformers

    config_cls = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
        "qwen3": transformers.Qwen3Config,
        "mistral": transformers.MistralConfig,
    }[arch]
    kwargs = dict(SHAPE, bos_token_id=1, eos_token_id=2)
    kwargs.update(overrides)
    shard_size = kwargs.pop("max_shard_size", None)
    config = config_cls(**kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    extra = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(path, **extra)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(), bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return path


def hf_greedy(path: Path, prompts: list[list[int]], max_new: int, dtype=torch.float32) -> list:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.generation_config.eos_token_id = None  # always generate max_new tokens
    model.generation_config.pad_token_id = 0
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        out = model.generate(ids, max_new_tokens=max_new, do_sample=False)
        outputs.append(out[0, len(prompt) :].tolist())
    return outputs


@dataclass
class _Seq:
    tokens: list[int]
    prompt_len: int
    block_table: list[int]
    computed: int = 0  # tokens whose K/V are in the cache
    generated: list[int] = field(default_factory=list)
    done: bool = False


def runner_greedy(
    runner: ModelRunner,
    prompts: list[list[int]],
    max_new: int,
    *,
    prefill_chunk: int = 1 << 30,
    stop_ids: set[int] = frozenset(),
    seed: int = 0,
) -> list[list[int]]:
    """Greedy-decode every prompt at once: each step, every unfinished sequence sends its
    next prompt chunk (at most `prefill_chunk` tokens) or its last sampled token, so steps
    mix prefill chunks and decodes. Blocks are scattered at random over the pool."""
    bs = runner.block_size
    free = list(range(runner.num_blocks))
    random.Random(seed).shuffle(free)
    seqs = []
    for prompt in prompts:
        need = -(-(len(prompt) + max_new) // bs)
        if need > len(free):
            raise ValueError("KV pool too small for these prompts")
        seqs.append(_Seq(list(prompt), len(prompt), [free.pop() for _ in range(need)]))
    while active := [s for s in seqs if not s.done]:
        feeds = [s.tokens[s.computed : s.computed + prefill_chunk] for s in active]
        batch = [SeqSlice(f, s.computed, s.block_table) for s, f in zip(active, feeds, strict=True)]
        logits = runner.forward(batch)
        for s, f, row in zip(active, feeds, logits, strict=True):
            s.computed += len(f)
            if s.computed == len(s.tokens):  # the whole sequence is cached: sample
                token = int(row.argmax())
                s.tokens.append(token)
                s.generated.append(token)
                s.done = len(s.generated) == max_new or token in stop_ids
    return [s.generated for s in seqs]
