"""adapter_config.json: the PEFT fields that decide a LoRA adapter's forward, checked.

What we serve is plain LoRA: `delta(x) = scaling * B(A(x))` per target module, with
`scaling = alpha / r` (or `alpha / sqrt(r)` under rsLoRA) and per-module `r` / `alpha`
from `rank_pattern` / `alpha_pattern`. Every PEFT field that changes that forward (DoRA
and the other variants, biases, `modules_to_save`, ...) is refused naming the field, not
ignored: ignoring it would serve wrong tokens silently. Fields that only shaped training
(dropout, init, `layers_to_transform`) are ignored: the saved tensors say which layers
and modules an adapter touches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infleet.lora.errors import AdapterError

# field -> what it is; a truthy value is refused.
_VARIANTS = {
    "use_dora": "DoRA (weight-decomposed LoRA)",
    "use_qalora": "QA-LoRA",
    "alora_invocation_tokens": "activated LoRA (aLoRA)",
    "velora_config": "VeLoRA",
    "monteclora_config": "MonteCLoRA",
    "use_bdlora": "block-diagonal LoRA",
    "arrow_config": "Arrow routing",
    "kasa_config": "KaSA",
    "modules_to_save": "full copies of base modules (modules_to_save)",
    "trainable_token_indices": "trained embedding rows (trainable_token_indices)",
    "layer_replication": "replicated layers (layer_replication)",
    "target_parameters": "adapters on raw parameters (target_parameters)",
    "lora_bias": "a bias on lora_B (lora_bias)",
    "fan_in_fan_out": "transposed weights (fan_in_fan_out, for Conv1D bases)",
}
_TASK_TYPES = (None, "CAUSAL_LM")


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    rank: int
    alpha: float
    use_rslora: bool
    # A list of module names (matched by their last components, as PEFT does) or one
    # regex over full module names; None when the config leaves it to PEFT's defaults.
    target_modules: tuple[str, ...] | str | None
    rank_pattern: Mapping[str, int] = field(default_factory=dict)
    alpha_pattern: Mapping[str, float] = field(default_factory=dict)

    def rank_for(self, module_path: str) -> tuple[int, str]:
        """The rank PEFT gives `module_path` ("model.layers.3.self_attn.q_proj"), and the
        field that sets it (`r` or `rank_pattern`)."""
        key = _pattern_key(self.rank_pattern, module_path)
        return (self.rank, "r") if key is None else (self.rank_pattern[key], "rank_pattern")

    def scaling(self, module_path: str, rank: int) -> float:
        key = _pattern_key(self.alpha_pattern, module_path)
        alpha = self.alpha if key is None else self.alpha_pattern[key]
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank


def _pattern_key(patterns: Mapping[str, Any], module_path: str) -> str | None:
    """PEFT's rule: the first pattern that matches the end of the path at a dot boundary."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module_path):
            return key
    return None


def parse_adapter_config(raw: Any) -> AdapterConfig:
    """Checks a parsed adapter_config.json; raises AdapterError naming the first bad field."""
    if not isinstance(raw, dict):
        raise AdapterError("adapter_config.json", "adapter_config.json is not a JSON object")
    peft_type = raw.get("peft_type")
    if peft_type != "LORA":
        raise AdapterError("peft_type", f"peft_type {peft_type!r} is not supported (only 'LORA')")
    if raw.get("task_type") not in _TASK_TYPES:
        raise AdapterError(
            "task_type", f"task_type {raw['task_type']!r} is not supported (only 'CAUSAL_LM')"
        )
    for name, what in _VARIANTS.items():
        if raw.get(name):
            raise AdapterError(name, f"{name}: {what} is not supported; plain LoRA only")
    if raw.get("bias", "none") not in (None, "none"):
        raise AdapterError("bias", f"bias {raw['bias']!r} is not supported (only 'none')")
    init = raw.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith("mica"):
        raise AdapterError(
            "init_lora_weights", f"init_lora_weights {init!r}: MiCA is not supported"
        )
    return AdapterConfig(
        rank=_positive_int(raw.get("r"), "r"),
        alpha=_number(raw.get("lora_alpha", 8), "lora_alpha"),
        use_rslora=_bool(raw.get("use_rslora", False), "use_rslora"),
        target_modules=_targets(raw.get("target_modules")),
        rank_pattern={
            _regex(k, "rank_pattern"): _positive_int(v, f"rank_pattern[{k!r}]")
            for k, v in _mapping(raw.get("rank_pattern"), "rank_pattern").items()
        },
        alpha_pattern={
            _regex(k, "alpha_pattern"): _number(v, f"alpha_pattern[{k!r}]")
            for k, v in _mapping(raw.get("alpha_pattern"), "alpha_pattern").items()
        },
    )


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdapterError(name, f"{name} must be a positive integer, got {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AdapterError(name, f"{name} must be a finite number, got {value!r}")
    return float(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise AdapterError(name, f"{name} must be true or false, got {value!r}")
    return value


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AdapterError(name, f"{name} must be an object, got {value!r}")
    return value


def _regex(pattern: Any, name: str) -> str:
    try:
        re.compile(pattern)
    except (re.error, TypeError) as err:
        raise AdapterError(name, f"{name}: {pattern!r} is not a regular expression: {err}") from err
    return pattern


def _targets(value: Any) -> tuple[str, ...] | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _regex(value, "target_modules")
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise AdapterError(
        "target_modules", f"target_modules must be module names or a regex, got {value!r}"
    )
