"""Benchmark models: random weights in the exact shapes of real checkpoints.

Decode speed depends on shapes, not weight values, so the GPU benchmarks need no
download: the transformers model is built from the checkpoint's config with random
weights, and our engine loads those same tensors through its normal weight loader
(both sides of a comparison run the same model). `--scale tiny` keeps each
architecture (GQA, RoPE scaling, tied embeddings, q/k norms) at toy sizes so the whole
benchmark runs on a CPU in seconds.
"""

from __future__ import annotations

import tokenizers
import torch
from tokenizers.models import WordLevel

from infleet.engine.loader import LoadedModel
from infleet.engine.model_config import config_from_hf
from infleet.engine.models import build_model, load_weights
from infleet.engine.quantization.apply import attach_methods, finish_loading, weight_bytes
from infleet.engine.quantization.checkpoint import resolve_scheme
from infleet.engine.tokenizer import Tokenizer

# config.json of meta-llama/Llama-3.1-8B and Qwen/Qwen3-0.6B (the fields that shape them).
SHAPES: dict[str, dict] = {
    "llama-3.1-8b": {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128256,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "hidden_act": "silu",
    },
    "qwen3-0.6b": {
        "model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "vocab_size": 151936,
        "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
        "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
        "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "attention_bias": False, "hidden_act": "silu",
        "use_sliding_window": False,
    },
}  # fmt: skip
_TINY = {
    "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "max_position_embeddings": 16384,  # above Llama-3.1's original 8192 (its RoPE scaling)
}  # fmt: skip


def hf_config(name: str, scale: str) -> dict:
    if name not in SHAPES:
        raise ValueError(f"unknown benchmark model {name!r}; choose from {', '.join(SHAPES)}")
    if scale not in ("full", "tiny"):
        raise ValueError(f"--scale must be full or tiny, got {scale!r}")
    return {**SHAPES[name], **(_TINY if scale == "tiny" else {})}


def random_hf_model(config: dict, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """transformers' own model for `config` with its default random init, on `device`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_cfg = AutoConfig.for_model(config["model_type"], **fields)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype)
    return model.eval()


def numbered_tokenizer(vocab_size: int) -> Tokenizer:
    """A tokenizer whose token i is the word `<i>`: benchmarks send token ids, and the
    engine's detokenizer still has text to produce for every id."""
    vocab = {f"<{i}>": i for i in range(vocab_size)}
    backend = tokenizers.Tokenizer(WordLevel(vocab, unk_token="<0>"))
    return Tokenizer(backend, bos_token=None, eos_token=None, eos_token_ids=set(),
                     chat_template=None)  # fmt: skip


def loaded_from_hf(hf_model, config: dict, name: str, quantization: str = "none") -> LoadedModel:
    """Our engine's model holding the same weights as `hf_model` (copied once), quantized
    at load as `--quantization fp8|fp4` would."""
    ours = config_from_hf(config)
    param = next(hf_model.parameters())
    model = build_model(ours, param.device, param.dtype)
    float_bytes = weight_bytes(model)
    scheme = resolve_scheme(quantization, None)
    if scheme is not None:
        attach_methods(model, scheme)
    load_weights(model, hf_model.state_dict().items())
    if scheme is not None:
        finish_loading()
    tokenizer = numbered_tokenizer(ours.vocab_size)
    return LoadedModel(model, ours, tokenizer, name, param.device, param.dtype, scheme, float_bytes)
