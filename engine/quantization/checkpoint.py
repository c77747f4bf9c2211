"""Which quantized format a model's weights are in: `--quantization` and the checkpoint's
`quantization_config` (config.json) resolved into one `QuantScheme`, or a refusal that
names the unsupported scheme.

Read (the formats users find on the Hub):
- compressed-tensors `float-quantized` with FP8 weights per channel or per tensor (the
  `-FP8-dynamic` / `-FP8` models of llm-compressor), activations quantized per token at
  run time whatever the checkpoint's activation scheme (static `input_scale`s are unused);
- compressed-tensors `nvfp4-pack-quantized` (NVFP4 and NVFP4A16); activation scales of
  W4A4 checkpoints are unused: the engine runs FP4 weight-only (W4A16, as on Hopper);
- ModelOpt (`quant_method: modelopt`) `FP8` and `NVFP4`.
The JSON is read here, not through the compressed-tensors library: the engine image does
not carry it (and its transformers dependency); tests write checkpoints with it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from infleet.engine.model_config import ModelLoadError

Method = Literal["fp8", "fp4"]
METHODS: tuple[Method, ...] = ("fp8", "fp4")
SUPPORTED = (
    "compressed-tensors float-quantized (FP8 per channel or per tensor), compressed-tensors "
    "nvfp4-pack-quantized, modelopt FP8, modelopt NVFP4"
)


class UnsupportedQuantization(ModelLoadError):
    """A checkpoint's quantization scheme, or a flag against it, that cannot be served."""


@dataclass(frozen=True, slots=True)
class QuantScheme:
    method: Method
    source: str  # "online" (quantized at load) or the checkpoint format, for the log
    # checkpoint tensor suffix -> the parameter of the quantized layer that takes it
    tensor_names: dict[str, str] = field(default_factory=dict)
    # the checkpoint's global scale divides (compressed-tensors) rather than multiplies
    inverse_global_scale: bool = False
    # checkpoint tensors read and not used (static activation scales)
    unused: frozenset[str] = frozenset()
    ignore: tuple[str, ...] = ()  # checkpoint module names (or patterns) left unquantized

    @property
    def prequantized(self) -> bool:
        return self.source != "online"

    def is_ignored(self, module: str) -> bool:
        """compressed-tensors `ignore` (names, `re:` regexes) and ModelOpt
        `exclude_modules` (names, `*` wildcards)."""
        for pattern in self.ignore:
            if pattern.startswith("re:"):
                if re.fullmatch(pattern[3:], module):
                    return True
            elif fnmatch.fnmatchcase(module, pattern) or module.endswith("." + pattern):
                return True
        return False

    def is_unused(self, name: str) -> bool:
        return name.rsplit(".", 1)[-1] in self.unused


_FP8_NAMES = {"weight": "weight", "weight_scale": "weight_scale"}
_CT_FP4_NAMES = {
    "weight_packed": "weight_packed",
    "weight_scale": "weight_scale",
    "weight_global_scale": "weight_global_scale",
}
_MODELOPT_FP4_NAMES = {
    "weight": "weight_packed",
    "weight_scale": "weight_scale",
    "weight_scale_2": "weight_global_scale",
}
_ACTIVATION_SCALES = frozenset({"input_scale", "input_global_scale"})


def online_scheme(method: Method) -> QuantScheme:
    return QuantScheme(method=method, source="online")


def _refuse(what: str) -> UnsupportedQuantization:
    return UnsupportedQuantization(f"{what} is not supported (supported: {SUPPORTED})")


def _compressed_tensors(qc: dict[str, Any]) -> QuantScheme:
    if qc.get("sparsity_config") and qc["sparsity_config"].get("format", "dense") != "dense":
        raise _refuse(f"compressed-tensors sparsity {qc['sparsity_config'].get('format')!r}")
    if qc.get("transform_config"):
        raise _refuse("compressed-tensors transforms (transform_config)")
    if qc.get("kv_cache_scheme"):
        raise _refuse(
            "a quantized KV cache in the checkpoint (kv_cache_scheme; use --kv-cache-dtype fp8)"
        )
    status = qc.get("quantization_status", "compressed")
    if status != "compressed":
        raise _refuse(f"compressed-tensors quantization_status {status!r}")
    groups = list((qc.get("config_groups") or {}).values())
    if not groups:
        raise _refuse("compressed-tensors without config_groups")
    formats = {g.get("format") or qc.get("format") for g in groups}
    weights = [g.get("weights") or {} for g in groups]
    if len(formats) > 1 or any(w != weights[0] for w in weights):
        raise _refuse(f"compressed-tensors with mixed schemes ({', '.join(map(str, formats))})")
    fmt, w = formats.pop(), weights[0]
    shape = (
        f"{w.get('type')} {w.get('num_bits')}-bit weights, strategy {w.get('strategy')!r}, "
        f"group_size {w.get('group_size')}"
    )
    ignore = tuple(qc.get("ignore") or ())
    if fmt == "float-quantized":
        if (w.get("type"), w.get("num_bits")) != ("float", 8) or w.get("strategy") not in (
            "channel",
            "tensor",
        ):
            raise _refuse(f"compressed-tensors float-quantized with {shape}")
        return QuantScheme(
            "fp8", f"compressed-tensors {fmt}", _FP8_NAMES, False, _ACTIVATION_SCALES, ignore
        )
    if fmt == "nvfp4-pack-quantized":
        if (w.get("type"), w.get("num_bits"), w.get("group_size")) != ("float", 4, 16):
            raise _refuse(f"compressed-tensors nvfp4-pack-quantized with {shape}")
        return QuantScheme(
            "fp4", f"compressed-tensors {fmt}", _CT_FP4_NAMES, True, _ACTIVATION_SCALES, ignore
        )
    raise _refuse(f"compressed-tensors format {fmt!r} ({shape})")


def _modelopt(qc: dict[str, Any]) -> QuantScheme:
    qc = qc.get("quantization", qc)  # hf_quant_config.json nests it
    algo = qc.get("quant_algo")
    if qc.get("kv_cache_quant_algo"):
        raise _refuse(
            f"modelopt kv_cache_quant_algo {qc['kv_cache_quant_algo']!r} "
            "(a quantized KV cache in the checkpoint; use --kv-cache-dtype fp8)"
        )
    ignore = tuple(qc.get("exclude_modules") or qc.get("ignore") or ())
    if algo == "FP8":
        return QuantScheme("fp8", "modelopt FP8", _FP8_NAMES, False, _ACTIVATION_SCALES, ignore)
    if algo == "NVFP4" and qc.get("group_size", 16) == 16:
        return QuantScheme(
            "fp4", "modelopt NVFP4", _MODELOPT_FP4_NAMES, False, _ACTIVATION_SCALES, ignore
        )
    raise _refuse(f"modelopt quant_algo {algo!r} (group_size {qc.get('group_size')})")


def scheme_from_config(quantization_config: dict[str, Any]) -> QuantScheme:
    """config.json's `quantization_config` -> the scheme, or UnsupportedQuantization."""
    method = quantization_config.get("quant_method")
    if method == "compressed-tensors":
        return _compressed_tensors(quantization_config)
    if method == "modelopt":
        return _modelopt(quantization_config)
    raise _refuse(f"quantization_config.quant_method {method!r}")


def resolve_scheme(flag: str, quantization_config: dict[str, Any] | None) -> QuantScheme | None:
    """`--quantization` (none / fp8 / fp4 / auto) with the checkpoint's config: a
    quantized checkpoint runs in its own format (a flag naming another is refused); an
    unquantized one is quantized at load when the flag asks."""
    if flag not in ("auto", "none", *METHODS):
        raise ValueError(f"--quantization: {flag!r} is not one of auto, none, fp8, fp4")
    if quantization_config is None:
        return online_scheme(flag) if flag in METHODS else None  # type: ignore[arg-type]
    scheme = scheme_from_config(quantization_config)
    if flag not in ("auto", scheme.method):
        raise UnsupportedQuantization(
            f"--quantization {flag} for a checkpoint already quantized as {scheme.method} "
            f"({scheme.source}): leave --quantization at auto or set it to {scheme.method}"
        )
    return scheme
