"""The engine table: one entry per engine kind, and the flags each gets from a spec.

Every kind turns the spec into one mapping of its own flag names (`settings`): the
infleet engine reads it as its --config file; the other engines get it as command-line
flags. A spec field an engine cannot honour is an error naming the field (never ignored).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infleet import __version__
from infleet.api import InferenceServiceSpec
from infleet.api.quantity import to_gib
from infleet.operator.api_keys import api_key_args, api_keys_settings
from infleet.operator.errors import SpecError, unsupported
from infleet.operator.model_source import ModelSource

Settings = dict[str, Any]  # flag name (without --) -> value; True means a bare flag
CONFIG_PATH = "/etc/infleet/engine.yaml"


@dataclass(frozen=True, slots=True)
class EngineProfile:
    kind: str
    image: str
    command: tuple[str, ...]
    port: int
    host_flag: str  # rendered as --FLAG=$(POD_IP)
    readiness_path: str
    liveness_path: str
    # The metric names it exports are in infleet.autoscaler.engines (ENGINE_METRICS):
    # the one table the autoscaler, the PrometheusRule and docs/contracts.md read.
    # Whether the engine itself drains in-flight requests on SIGTERM for the grace period.
    drains_on_sigterm: bool
    # The non-root user its pods run as: the infleet images' own user; the stock vLLM,
    # SGLang and TGI images have none (they run as root), so the fetcher's, 1000.
    run_as_user: int
    # engine.quantization -> this engine's value for its quantization flag; a value not
    # listed is unsupported. fp4 is a pre-quantized NVFP4 checkpoint everywhere; infleet
    # also quantizes an unquantized checkpoint at load (docs/operator.md).
    quantization: dict[str, str]
    settings: Callable[[InferenceServiceSpec, ModelSource, int], Settings]
    # spec.engine.apiKeys (operator/api_keys.py): the env var the engine reads its key from,
    # or, with api_key_flag, the variable its flag is expanded from.
    api_key_env: str
    api_key_flag: str | None = None
    positional_model: bool = False  # `vllm serve MODEL`
    reads_config_file: bool = False
    # LoRA: environment its pods get with engine.lora.maxAdapters > 0, and whether the
    # adapter controller can deliver adapters to it (the engine downloads a store URL
    # given as lora_path; vLLM and SGLang read local paths only: docs/lora-onboarding.md).
    lora_env: tuple[tuple[str, str], ...] = ()
    lora_delivery: bool = False


def _require_plain(spec: InferenceServiceSpec, kind: str, *, dram: bool, nvme: bool) -> None:
    kv = spec.engine.kv_cache
    if kv.dram is not None and not dram:
        raise unsupported(kind, "engine.kvCache.dram", "a host-memory KV tier")
    if kv.nvme is not None and not nvme:
        raise unsupported(kind, "engine.kvCache.nvme", "an NVMe KV tier")


def _quantization(kind: str, spec: InferenceServiceSpec, flag: str) -> Settings:
    """`{flag: value}` from the engine table's quantization column, or {} for none."""
    wanted = spec.engine.quantization
    if wanted == "none":
        return {}
    value = ENGINES[kind].quantization.get(wanted)
    if value is None:
        raise unsupported(kind, "engine.quantization", f"quantization {wanted}")
    return {flag: value}


def _infleet(spec: InferenceServiceSpec, model: ModelSource, port: int) -> Settings:
    engine, kind = spec.engine, "infleet"
    p = engine.parallelism
    if (p.tensor, p.pipeline, p.expert) != (1, 1, 1):
        raise unsupported(kind, "engine.parallelism", "parallelism above 1")
    _require_plain(spec, kind, dram=False, nvme=False)
    out: Settings = {
        "model": model.path,
        "served-model-name": model.served_name,
        "port": port,
        "device": "auto" if spec.resources.gpus else "cpu",
        "kv-cache-dtype": engine.kv_cache.dtype,
        "shutdown-grace-seconds": engine.shutdown_grace_seconds,
        **_quantization(kind, spec, "quantization"),
    } | api_keys_settings(spec)
    if engine.lora.max_adapters:
        out["enable-lora"] = True
        out["max-loras"] = engine.lora.max_adapters
        out["max-cpu-loras"] = engine.lora.max_cpu_adapters or engine.lora.max_adapters
        out["max-lora-rank"] = engine.lora.max_rank
    if engine.speculative.method != "none":
        out["speculative-config"] = _speculative_config(kind, spec)  # YAML; read as JSON
    return out


def _speculative_config(kind: str, spec: InferenceServiceSpec) -> dict[str, Any]:
    """engine.speculative as vLLM's --speculative-config object (which infleet reads too):
    method names and fields are vLLM's; self_draft is infleet's own, eagle theirs."""
    s = spec.engine.speculative
    if s.method == "self_draft" and kind != "infleet":
        raise unsupported(kind, "engine.speculative.method", "self_draft (infleet only)")
    if s.method == "eagle" and kind == "infleet":
        raise unsupported(kind, "engine.speculative.method", "eagle (no EAGLE heads)")
    config: dict[str, Any] = {"method": s.method, "num_speculative_tokens": s.num_tokens}
    if s.method == "ngram":
        config |= {
            "prompt_lookup_max": s.prompt_lookup_max,
            "prompt_lookup_min": s.prompt_lookup_min,
        }
    elif s.method == "self_draft":
        config["num_layers"] = s.self_draft_layers
    else:  # draft_model, eagle: CEL guarantees the model
        config["model"] = s.draft_model
    return config


def _vllm(spec: InferenceServiceSpec, model: ModelSource, port: int) -> Settings:
    engine, kind = spec.engine, "vllm"
    p = engine.parallelism
    _require_plain(spec, kind, dram=False, nvme=False)
    out: Settings = {"port": port, "served-model-name": model.served_name}
    out["tensor-parallel-size"] = p.tensor
    out["pipeline-parallel-size"] = p.pipeline
    if p.expert > 1:
        if p.expert != p.tensor:
            raise SpecError(
                "engine.parallelism.expert",
                "vllm's expert-parallel degree is the tensor-parallel degree: set it to "
                f"engine.parallelism.tensor ({p.tensor})",
            )
        out["enable-expert-parallel"] = True
    out |= _quantization(kind, spec, "quantization")
    if engine.kv_cache.dtype == "fp8":
        out["kv-cache-dtype"] = "fp8"
    if engine.lora.max_adapters:
        out["enable-lora"] = True
        out["max-loras"] = engine.lora.max_adapters
        out["max-lora-rank"] = engine.lora.max_rank
        if engine.lora.max_cpu_adapters:
            out["max-cpu-loras"] = engine.lora.max_cpu_adapters
    if engine.speculative.method != "none":
        config = _speculative_config(kind, spec)
        out["speculative-config"] = json.dumps(config, sort_keys=True)
    return out


def _sglang(spec: InferenceServiceSpec, model: ModelSource, port: int) -> Settings:
    engine, kind = spec.engine, "sglang"
    p = engine.parallelism
    _require_plain(spec, kind, dram=True, nvme=False)
    out: Settings = {"model-path": model.path, "served-model-name": model.served_name}
    out["enable-metrics"] = True  # SGLang exports /metrics only when asked
    out |= {"port": port, "tp-size": p.tensor, "pp-size": p.pipeline, "ep-size": p.expert}
    out |= _quantization(kind, spec, "quantization")
    if engine.kv_cache.dtype == "fp8":
        out["kv-cache-dtype"] = "fp8_e4m3"
    if engine.kv_cache.dram is not None:
        out["enable-hierarchical-cache"] = True
        out["hicache-size"] = to_gib(engine.kv_cache.dram)
    if engine.lora.max_adapters:
        out["enable-lora"] = True
        out["max-loras-per-batch"] = engine.lora.max_adapters
        out["max-lora-rank"] = engine.lora.max_rank
        out["lora-target-modules"] = "all"  # adapters come at run time, none at start
    spec_dec = engine.speculative
    if spec_dec.method == "self_draft":
        raise unsupported(kind, "engine.speculative.method", "self_draft (infleet only)")
    if spec_dec.method != "none":
        algorithm = {"ngram": "NGRAM", "eagle": "EAGLE", "draft_model": "STANDALONE"}
        out["speculative-algorithm"] = algorithm[spec_dec.method]
        if spec_dec.draft_model is not None:
            out["speculative-draft-model-path"] = spec_dec.draft_model
        out["speculative-num-draft-tokens"] = spec_dec.num_tokens
    return out


def _tgi(spec: InferenceServiceSpec, model: ModelSource, port: int) -> Settings:
    engine, kind = spec.engine, "tgi"
    _require_plain(spec, kind, dram=False, nvme=False)
    if engine.lora.max_adapters:
        raise unsupported(kind, "engine.lora.maxAdapters", "dynamic LoRA slots")
    if engine.speculative.method not in ("none", "ngram"):
        raise unsupported(kind, "engine.speculative.method", engine.speculative.method)
    out: Settings = {"model-id": model.path, "port": port, "num-shard": engine.parallelism.tensor}
    out |= _quantization(kind, spec, "quantize")
    if engine.kv_cache.dtype == "fp8":
        out["kv-cache-dtype"] = "fp8_e4m3fn"
    if engine.speculative.method == "ngram":
        out["speculate"] = engine.speculative.num_tokens
    return out


ENGINES: dict[str, EngineProfile] = {
    "infleet": EngineProfile(
        kind="infleet",
        image=f"ghcr.io/infleet/infleet-engine:{__version__}-cuda",  # scripts/build-images.sh
        command=("infleet", "serve"),
        port=8000,
        host_flag="host",
        readiness_path="/health",
        liveness_path="/health",
        drains_on_sigterm=True,
        run_as_user=65532,  # images/Dockerfile
        quantization={"fp8": "fp8", "fp4": "fp4"},
        settings=_infleet,
        api_key_env="INFLEET_API_KEY",
        reads_config_file=True,
        lora_delivery=True,
    ),
    "vllm": EngineProfile(
        kind="vllm",
        image="vllm/vllm-openai:v0.11.0",
        command=("vllm", "serve"),
        port=8000,
        host_flag="host",
        readiness_path="/health",
        liveness_path="/health",
        drains_on_sigterm=False,
        run_as_user=1000,
        quantization={"fp8": "fp8", "fp4": "modelopt_fp4"},
        settings=_vllm,
        api_key_env="VLLM_API_KEY",
        positional_model=True,
        lora_env=(("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True"),),
    ),
    "sglang": EngineProfile(
        kind="sglang",
        image="lmsysorg/sglang:v0.5.3",
        command=("python3", "-m", "sglang.launch_server"),
        port=30000,
        host_flag="host",
        readiness_path="/health",
        liveness_path="/health",
        drains_on_sigterm=False,
        run_as_user=1000,
        quantization={"fp8": "fp8", "fp4": "modelopt_fp4"},
        settings=_sglang,
        api_key_env="SGLANG_API_KEY",  # not read by SGLang itself: only --api-key
        api_key_flag="api-key",
    ),
    "tgi": EngineProfile(
        kind="tgi",
        image="ghcr.io/huggingface/text-generation-inference:3.3.5",
        command=("text-generation-launcher",),
        port=8080,
        host_flag="hostname",
        readiness_path="/health",
        liveness_path="/health",
        drains_on_sigterm=False,
        run_as_user=1000,
        quantization={"fp8": "fp8"},
        settings=_tgi,
        api_key_env="API_KEY",  # text-generation-launcher --api-key's env
    ),
}


def to_flags(settings: Settings) -> list[str]:
    """`{"tp-size": 2, "enable-lora": True}` -> `["--tp-size=2", "--enable-lora"]`."""
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in settings.items()]


def engine_command(
    spec: InferenceServiceSpec, model: ModelSource, profile: EngineProfile
) -> tuple[Settings, list[str], list[str]]:
    """(settings for the ConfigMap, container command, container args)."""
    if model.builtin and profile.kind != "infleet":
        raise SpecError(
            "model.uri", f"builtin models run on engine kind infleet, not {profile.kind}"
        )
    settings = profile.settings(spec, model, profile.port)
    host = f"--{profile.host_flag}=$(POD_IP)"
    if profile.reads_config_file:
        args = [f"--config={CONFIG_PATH}", host]
    else:
        args = ([model.path] if profile.positional_model else []) + [host, *to_flags(settings)]
    args += api_key_args(spec, profile)
    return settings, list(profile.command), [*args, *spec.engine.args]
