"""Loading a model from a GGUF file: config from metadata, weights dequantized at load.

The metadata becomes an HF-style config dict, so GGUF and safetensors models go through the
same validation; tensor names are translated to transformers names for `load_weights`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import torch

from infleet.engine.loader.dequant import dequantize
from infleet.engine.loader.gguf_format import GGUFFile
from infleet.engine.model_config import ModelConfig, ModelLoadError, config_from_hf

_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
_TOP_LEVEL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_PER_LAYER = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_NAME = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def hf_config_dict(gguf: GGUFFile) -> dict[str, Any]:
    meta = gguf.metadata
    arch = meta.get("general.architecture")
    if arch not in _ARCHITECTURES:
        raise ModelLoadError(
            f"unsupported GGUF architecture {arch!r}; supported: {', '.join(_ARCHITECTURES)}"
        )
    if "rope_freqs.weight" in gguf.tensors:
        raise ModelLoadError("GGUF rope_freqs (Llama-3.1 frequency factors) is not supported")

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise ModelLoadError(f"GGUF metadata has no {arch}.{key}")
        return value

    heads = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    head_dim = int(get("attention.key_length", hidden // heads))
    if int(get("rope.dimension_count", head_dim)) != head_dim:
        raise ModelLoadError("GGUF partial rotary embeddings are not supported")
    cfg = {
        "architectures": [_ARCHITECTURES[arch]],
        "hidden_size": hidden,
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "max_position_embeddings": int(get("context_length")),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "vocab_size": int(meta.get(f"{arch}.vocab_size", len(meta["tokenizer.ggml.tokens"]))),
        "tie_word_embeddings": "output.weight" not in gguf.tensors,
        "attention_bias": "blk.0.attn_q.bias" in gguf.tensors,
    }
    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    if scaling == "linear":
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": float(get("rope.scaling.factor"))}
    elif scaling != "none":
        raise ModelLoadError(f"GGUF rope scaling {scaling!r} is not supported (none, linear)")
    window = meta.get(f"{arch}.attention.sliding_window")
    if window:
        raise ModelLoadError(
            "GGUF sliding-window attention is not supported; use the HF checkpoint"
        )
    return cfg


def hf_tensor_name(name: str) -> str:
    stem, _, kind = name.rpartition(".")
    if stem in _TOP_LEVEL:
        return f"{_TOP_LEVEL[stem]}.{kind}"
    match = _LAYER_NAME.fullmatch(name)
    if match and match.group(2) in _PER_LAYER:
        return f"model.layers.{match.group(1)}.{_PER_LAYER[match.group(2)]}.{kind}"
    return name  # load_weights names it as unexpected


def undo_rope_permutation(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """llama.cpp's converter reorders each Q/K head's rows from rotate-half order
    (all first halves, then all second halves) to interleaved pairs; put them back."""
    rows = w.shape[0]
    return (
        w.reshape(num_heads, rows // num_heads // 2, 2, *w.shape[1:])
        .transpose(1, 2)
        .reshape(w.shape)
    )


def iter_gguf_weights(gguf: GGUFFile, config: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    permuted = {"attn_q": config.num_heads, "attn_k": config.num_kv_heads}
    for name, tensor in gguf.tensors.items():
        weight = dequantize(tensor.raw, tensor.qtype, tensor.shape)
        match = _LAYER_NAME.fullmatch(name)
        if config.architecture == "llama" and match and match.group(2) in permuted:
            weight = undo_rope_permutation(weight, permuted[match.group(2)])
        yield hf_tensor_name(name), weight


def read_gguf_config(gguf: GGUFFile) -> ModelConfig:
    return config_from_hf(hf_config_dict(gguf))
