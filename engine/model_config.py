"""What the engine needs to know about a model's shape, read from an HF `config.json` dict.

One decoder implementation serves every supported architecture; the per-architecture
differences (biases, q/k norms, sliding windows) become plain fields here so model code
never branches on an architecture name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infleet.engine.moe_config import MoEConfig, MoEConfigError, moe_from_hf


class ModelLoadError(MoEConfigError):
    """A model cannot be loaded: unsupported architecture, missing file or weight, bad value."""


@dataclass(slots=True, frozen=True)
class RopeScaling:
    rope_type: str  # "linear" or "llama3" ("default" is expressed as no RopeScaling)
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(slots=True)
class ModelConfig:
    architecture: str  # a value of SUPPORTED_ARCHITECTURES
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    # Per layer: attend only to the last N keys (None = full attention).
    sliding_windows: tuple[int | None, ...] = ()
    moe: MoEConfig | None = None  # None: every layer's MLP is dense

    def __post_init__(self) -> None:
        if not self.sliding_windows:
            self.sliding_windows = (None,) * self.num_layers
        if len(self.sliding_windows) != self.num_layers:
            raise ModelLoadError(
                f"{len(self.sliding_windows)} sliding-window entries for {self.num_layers} layers"
            )
        if self.num_heads % self.num_kv_heads:
            raise ModelLoadError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.num_kv_heads}"
            )
        if self.moe is not None and len(self.moe.sparse_layers) != self.num_layers:
            raise ModelLoadError(
                f"{len(self.moe.sparse_layers)} sparse-layer entries for {self.num_layers} layers"
            )


# HF `architectures` entries and `model_type` values we can run.
SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe",
}
# An MoE architecture's attention is its dense sibling's.
_ATTENTION_OF = {"mixtral": "mistral", "qwen2_moe": "qwen2", "qwen3_moe": "qwen3"}
_ROPE_TYPES = ("default", "linear", "llama3")


def detect_architecture(cfg: dict[str, Any]) -> str:
    names = list(cfg.get("architectures") or [])
    for name in names:
        if name in SUPPORTED_ARCHITECTURES:
            return SUPPORTED_ARCHITECTURES[name]
    model_type = cfg.get("model_type")
    if not names and model_type in SUPPORTED_ARCHITECTURES.values():
        return model_type
    found = names or [f"model_type={model_type!r}"]
    raise ModelLoadError(
        f"unsupported model architecture {', '.join(map(str, found))}; "
        f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
    )


def parse_rope(cfg: dict[str, Any]) -> tuple[float, RopeScaling | None]:
    """rope_theta and scaling from either transformers 5 `rope_parameters` or 4.x fields."""
    params = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in _ROPE_TYPES:
        raise ModelLoadError(
            f"unsupported rope_type {rope_type!r} in config.json; supported: {', '.join(_ROPE_TYPES)}"
        )
    if rope_type == "default":
        return theta, None
    if "factor" not in params:
        raise ModelLoadError(f"rope_type {rope_type!r} needs a 'factor' in config.json")
    scaling = RopeScaling(rope_type=rope_type, factor=float(params["factor"]))
    if rope_type == "llama3":
        scaling = RopeScaling(
            rope_type="llama3",
            factor=float(params["factor"]),
            low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=int(
                params.get("original_max_position_embeddings", cfg["max_position_embeddings"])
            ),
        )
    return theta, scaling


def _sliding_windows(cfg: dict[str, Any], arch: str, num_layers: int) -> tuple[int | None, ...]:
    window = cfg.get("sliding_window")
    if arch == "llama" or not window:
        return (None,) * num_layers
    if arch == "mistral":  # Mistral slides on every layer when a window is configured
        return (int(window),) * num_layers
    layer_types = cfg.get("layer_types")
    if layer_types is None:  # transformers 4.x Qwen: layers from max_window_layers on slide
        if not cfg.get("use_sliding_window"):
            return (None,) * num_layers
        first = int(cfg.get("max_window_layers", num_layers))
        layer_types = [
            "sliding_attention" if i >= first else "full_attention" for i in range(num_layers)
        ]
    return tuple(int(window) if t == "sliding_attention" else None for t in layer_types)


def _require(cfg: dict[str, Any], key: str) -> Any:
    if key not in cfg:
        raise ModelLoadError(f"config.json has no {key!r}")
    return cfg[key]


def config_from_hf(cfg: dict[str, Any]) -> ModelConfig:
    """Build a ModelConfig from the dict in an HF `config.json`."""
    arch = detect_architecture(cfg)
    family = _ATTENTION_OF.get(arch, arch)
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ModelLoadError(f"unsupported hidden_act {act!r}; only 'silu' is implemented")
    hidden = int(_require(cfg, "hidden_size"))
    heads = int(_require(cfg, "num_attention_heads"))
    layers = int(_require(cfg, "num_hidden_layers"))
    theta, scaling = parse_rope(cfg)
    attention_bias = bool(cfg.get("attention_bias", False))
    return ModelConfig(
        architecture=arch,
        vocab_size=int(_require(cfg, "vocab_size")),
        hidden_size=hidden,
        # A Qwen-MoE's dense layers (mlp_only_layers) use intermediate_size.
        intermediate_size=int(_require(cfg, "intermediate_size")),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        # Qwen2 has q/k/v biases (Qwen2-MoE unless qkv_bias=false); Llama and Qwen3 put
        # them on q/k/v/o when asked.
        qkv_bias=(family == "qwen2" and bool(cfg.get("qkv_bias", True)))
        or (family in ("llama", "qwen3") and attention_bias),
        o_bias=family in ("llama", "qwen3") and attention_bias,
        mlp_bias=arch == "llama" and bool(cfg.get("mlp_bias", False)),
        qk_norm=family == "qwen3",
        sliding_windows=_sliding_windows(cfg, family, layers),
        moe=_moe(cfg, arch, layers),
    )


def _moe(cfg: dict[str, Any], arch: str, layers: int) -> MoEConfig | None:
    try:
        return moe_from_hf(cfg, arch, layers)
    except MoEConfigError as err:
        raise ModelLoadError(str(err)) from err
