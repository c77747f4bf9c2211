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

from infleet.engine.core.runner import ModelRunner, SeqSlice

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


# transformers module name -> llama.cpp tensor name (written out here, independently of the
# loader's own table, so a wrong mapping there cannot pass by agreeing with itself).
_GGUF_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_name(name: str) -> str:
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
    }
    if name in top or name == "lm_head.weight":
        return top.get(name, "output.weight")
    _, _, layer, rest = name.split(".", 3)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{_GGUF_NAMES[module]}.{kind}"


def _interleave_rope_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """What llama.cpp's converter does to llama Q/K rows (rotate-half -> interleaved pairs)."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
    )


def write_gguf(hf_path: Path, out: Path) -> Path:
    """Convert a tiny checkpoint from `build_checkpoint` into an F32 GGUF file."""
    import json

    import gguf
    from safetensors.torch import load_file

    cfg = json.loads((hf_path / "config.json").read_text())
    tok = json.loads((hf_path / "tokenizer.json").read_text())
    arch, heads, kv_heads = (
        cfg["model_type"],
        cfg["num_attention_heads"],
        cfg["num_key_value_heads"],
    )
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    w = gguf.GGUFWriter(str(out), arch)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    special = {t["content"] for t in tok["added_tokens"] if t["special"]}
    pad = [f"[PAD{i}]" for i in range(len(vocab), cfg["vocab_size"])]  # llama.cpp's padding
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab] + pad)
    w.add_token_types([3 if t in special else 1 for t, _ in vocab] + [5] * len(pad))
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_bos_token_id(tok["model"]["vocab"]["<s>"])
    w.add_eos_token_id(tok["model"]["vocab"]["</s>"])
    w.add_add_bos_token(True)
    w.add_chat_template((hf_path / "chat_template.jinja").read_text())
    for name, tensor in sorted(load_file(hf_path / "model.safetensors").items()):
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            tensor = _interleave_rope_rows(tensor, heads if "q_proj" in name else kv_heads)
        w.add_tensor(_gguf_name(name), tensor.float().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
