"""Loading a model from a GGUF file: config from metadata, weights dequantized at load.

The metadata becomes an HF-style config dict, so GGUF and safetensors models go through the
same validation; tensor names are translated to transformers names for `load_weights`.
MoE layers use llama.cpp's standard layout: one stacked `[E, ...]` tensor per projection
(`ffn_{gate,up,down}_exps`), split here into transformers' per-expert matrices; a Mixtral
is a "llama" GGUF with an expert count.
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
    "qwen2moe": "Qwen2MoeForCausalLM",
    "qwen3moe": "Qwen3MoeForCausalLM",
}
# llama.cpp's router normalisation when the file has no expert_weights_norm key.
_NORM_TOPK_DEFAULT = {"llama": True, "qwen2moe": False, "qwen3moe": True}
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
    "ffn_gate_inp": "mlp.gate",
    "ffn_gate_shexp": "mlp.shared_expert.gate_proj",
    "ffn_up_shexp": "mlp.shared_expert.up_proj",
    "ffn_down_shexp": "mlp.shared_expert.down_proj",
    "ffn_gate_inp_shexp": "mlp.shared_expert_gate",
}
_STACKED_EXPERTS = {
    "ffn_gate_exps": "gate_proj",
    "ffn_up_exps": "up_proj",
    "ffn_down_exps": "down_proj",
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
    cfg.update(_moe_config(gguf, arch, cfg["num_hidden_layers"]))
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


def _moe_config(gguf: GGUFFile, arch: str, num_layers: int) -> dict[str, Any]:
    """The config.json MoE keys from expert metadata ({} for a dense model). Dense layers
    among sparse ones are the blocks without a router tensor."""
    meta = gguf.metadata
    experts = int(meta.get(f"{arch}.expert_count") or 0)
    if not experts:
        return {}
    used = meta.get(f"{arch}.expert_used_count")
    if used is None:
        raise ModelLoadError(
            f"GGUF metadata has {arch}.expert_count but no {arch}.expert_used_count"
        )
    cfg: dict[str, Any] = {
        "num_experts": experts,
        "num_local_experts": experts,
        "num_experts_per_tok": int(used),
        "norm_topk_prob": bool(meta.get(f"{arch}.expert_weights_norm", _NORM_TOPK_DEFAULT[arch])),
        "mlp_only_layers": [
            i for i in range(num_layers) if f"blk.{i}.ffn_gate_inp.weight" not in gguf.tensors
        ],
    }
    if arch == "llama":
        cfg["architectures"] = ["MixtralForCausalLM"]
        if cfg["mlp_only_layers"]:
            raise ModelLoadError("GGUF Mixtral with dense layers is not supported")
    else:  # Qwen-MoE: expert width, and the dense layers' width in feed_forward_length
        cfg["moe_intermediate_size"] = int(meta[f"{arch}.expert_feed_forward_length"])
        shared = meta.get(f"{arch}.expert_shared_feed_forward_length")
        if shared:
            cfg["shared_expert_intermediate_size"] = int(shared)
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
        kind = match.group(2) if match else None
        if config.architecture in ("llama", "mixtral") and kind in permuted:
            weight = undo_rope_permutation(weight, permuted[kind])
        if kind in _STACKED_EXPERTS:
            prefix = f"model.layers.{match.group(1)}.mlp.experts"
            for expert, matrix in enumerate(weight):
                yield f"{prefix}.{expert}.{_STACKED_EXPERTS[kind]}.weight", matrix
        elif kind == "ffn_gate_inp_shexp":  # llama.cpp stores the [1, H] gate as a vector
            yield hf_tensor_name(name), weight.reshape(1, -1)
        else:
            yield hf_tensor_name(name), weight


def read_gguf_config(gguf: GGUFFile) -> ModelConfig:
    return config_from_hf(hf_config_dict(gguf))
