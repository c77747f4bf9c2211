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
from infleet.api.engine import Parallelism
from infleet.operator.api_keys import api_key_args, api_keys_settings
from infleet.operator.errors import SpecError, unsupported
from infleet.operator.kv_tiers import (
    infleet_mount_args,
    infleet_settings,
    sglang_settings,
    vllm_settings,
)
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
    # LoRA (docs/lora-onboarding.md): environment its pods get with engine.lora.maxAdapters
    # > 0, and how the adapter controller delivers adapters to it: "engine" (it downloads a
    # store URL given as lora_path and reads the mounted set at start itself), "sync" (its
    # load API reads local paths only: the lora-sync sidecar, operator/lora_sync.py, does
    # both and calls lora_api), "" (none: adapters aimed at it are refused).
    lora_env: tuple[tuple[str, str], ...] = ()
    lora_delivery: str = ""
    lora_api: tuple[str, str] = ()  # (load path, unload path) of its runtime adapter API
    # A replica over several nodes (a LeaderWorkerSet group, operator/lws.py): the flags
    # the leader's and the workers' engine get, from (nodes, leader?); None: single node only.
    multi_node: Callable[[int, bool], list[str]] | None = None
    # Whether it publishes the router feed (/router/*, api/router_wire.py), guarded by the
    # service's admin key where it has keys (operator/admin_key.py).
    router_feed: bool = False


# LeaderWorkerSet puts these in every pod of a group; $(VAR) expands them in args.
_LEADER, _INDEX = "$(LWS_LEADER_ADDRESS)", "$(LWS_WORKER_INDEX)"


def _infleet_nodes(nodes: int, leader: bool) -> list[str]:
    # `infleet serve` reads LWS_GROUP_SIZE, LWS_WORKER_INDEX and LWS_LEADER_ADDRESS itself.
    return []


def _vllm_nodes(nodes: int, leader: bool) -> list[str]:
    # vLLM's multi-node launch without Ray: every node runs `vllm serve` with the group's
    # shape; the workers run headless (no API server).
    flags = [f"--nnodes={nodes}", f"--node-rank={_INDEX}", f"--master-addr={_LEADER}"]
    return flags if leader else [*flags, "--headless"]


def _sglang_nodes(nodes: int, leader: bool) -> list[str]:
    return [f"--nnodes={nodes}", f"--node-rank={_INDEX}", f"--dist-init-addr={_LEADER}:20000"]


def _require_plain(spec: InferenceServiceSpec, kind: str) -> None:
    kv = spec.engine.kv_cache
    if kv.dram is not None:
        raise unsupported(kind, "engine.kvCache.dram", "a host-memory KV tier")
    if kv.nvme is not None:
        raise unsupported(kind, "engine.kvCache.nvme", "an NVMe KV tier")


def _require_one_tenant(spec: InferenceServiceSpec, kind: str) -> None:
    """vLLM and SGLang take one API key and list every loaded adapter to every caller, so a
    service admitting other namespaces' adapters could not keep tenants apart there."""
    lora = spec.engine.lora
    if lora.max_adapters and lora.admits_others():
        field = "allowedNamespaces" if lora.allowed_namespaces else "namespaceSelector"
        raise unsupported(kind, f"engine.lora.{field}",
                          "adapters of other namespaces (tenants kept apart by API key)")  # fmt: skip


def _require_one_rank_features(spec: InferenceServiceSpec, kind: str) -> None:
    """What the bundled engine runs on one rank only (engine/distributed/degrees.py's
    check_features refuses the same at start-up): refused here, before any pod exists."""
    engine = spec.engine
    p = engine.parallelism
    if p.tensor * p.pipeline == 1:
        return
    features = [
        ("engine.lora.maxAdapters", engine.lora.max_adapters > 0, "LoRA"),
        ("engine.speculative.method", engine.speculative.method != "none", "speculative decoding"),
        ("engine.kvCache.dram", engine.kv_cache.dram is not None, "a host-memory KV tier"),
        ("engine.kvCache.nvme", engine.kv_cache.nvme is not None, "an NVMe KV tier"),
    ]
    for field, on, what in features:
        if on:
            raise unsupported(kind, field, f"{what} with more than one rank per replica")


def _quantization(kind: str, spec: InferenceServiceSpec, flag: str) -> Settings:
    """`{flag: value}` from the engine table's quantization column, or {} for none."""
    wanted = spec.engine.quantization
    if wanted == "none":
        return {}
    value = ENGINES[kind].quantization.get(wanted)
    if value is None:
        raise unsupported(kind, "engine.quantization", f"quantization {wanted}")
    return {flag: value}


def _expert_parallel(p: Parallelism, kind: str) -> Settings:
    """vLLM's meaning, which the bundled engine shares: expert parallelism reuses the
    tensor-parallel ranks, so parallelism.expert is 1 (off) or the tensor degree."""
    if p.expert == 1:
        return {}
    if p.expert != p.tensor:
        raise SpecError(
            "engine.parallelism.expert",
            f"{kind}'s expert-parallel degree is the tensor-parallel degree: set it to "
            f"engine.parallelism.tensor ({p.tensor}) or 1, not {p.expert}",
        )
    return {"enable-expert-parallel": True}


def check_gpus(spec: InferenceServiceSpec) -> None:
    """A GPU replica has exactly tensor x pipeline GPUs: fewer cannot start, more idle.
    (The CRD's CEL rule says only `<=`, so objects written before this check still
    validate; this is the Degraded condition that names the numbers.)"""
    p, gpus = spec.engine.parallelism, spec.resources.gpus
    if gpus and p.tensor * p.pipeline != gpus:
        raise SpecError(
            "resources.gpus",
            f"{gpus} GPUs per replica, but engine.parallelism.tensor ({p.tensor}) x "
            f"pipeline ({p.pipeline}) = {p.tensor * p.pipeline}: they must be equal",
        )


def _infleet(spec: InferenceServiceSpec, model: ModelSource, port: int) -> Settings:
    engine, kind = spec.engine, "infleet"
    p = engine.parallelism
    if p.pipeline > 1 and p.tensor > 1:  # engine/distributed/degrees.py refuses it too
        raise SpecError(
            "engine.parallelism.pipeline",
            f"engine infleet runs tensor ({p.tensor}) or pipeline ({p.pipeline}) "
            "parallelism, not both in one replica (vllm and sglang do)",
        )
    _require_one_rank_features(spec, kind)
    out: Settings = {
        "model": model.path,
        "served-model-name": model.served_name,
        "port": port,
        "device": "auto" if spec.resources.gpus else "cpu",
        "kv-cache-dtype": engine.kv_cache.dtype,
        "shutdown-grace-seconds": engine.shutdown_grace_seconds,
        **_quantization(kind, spec, "quantization"),
        **infleet_settings(spec),
    } | api_keys_settings(spec)
    if p.tensor > 1:
        out["tensor-parallel-size"] = p.tensor
    if p.pipeline > 1:
        out["pipeline-parallel-size"] = p.pipeline
    out |= _expert_parallel(p, kind)
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
    out: Settings = {"port": port, "served-model-name": model.served_name}
    out["tensor-parallel-size"] = p.tensor
    out["pipeline-parallel-size"] = p.pipeline
    out |= _expert_parallel(p, kind)
    out |= _quantization(kind, spec, "quantization")
    if engine.kv_cache.dtype == "fp8":
        out["kv-cache-dtype"] = "fp8"
    _require_one_tenant(spec, kind)
    out |= vllm_settings(spec)
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
    out: Settings = {"model-path": model.path, "served-model-name": model.served_name}
    out["enable-metrics"] = True  # SGLang exports /metrics only when asked
    out |= {"port": port, "tp-size": p.tensor, "pp-size": p.pipeline, "ep-size": p.expert}
    out |= _quantization(kind, spec, "quantization")
    if engine.kv_cache.dtype == "fp8":
        out["kv-cache-dtype"] = "fp8_e4m3"
    _require_one_tenant(spec, kind)
    out |= sglang_settings(spec)
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
    _require_plain(spec, kind)
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
        lora_delivery="engine",
        multi_node=_infleet_nodes,
        router_feed=True,
    ),
    "vllm": EngineProfile(
        kind="vllm",
        image="vllm/vllm-openai:v0.12.0",
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
        lora_delivery="sync",
        lora_api=("/v1/load_lora_adapter", "/v1/unload_lora_adapter"),
        multi_node=_vllm_nodes,
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
        lora_delivery="sync",
        lora_api=("/load_lora_adapter", "/unload_lora_adapter"),
        multi_node=_sglang_nodes,
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
    check_gpus(spec)
    settings = profile.settings(spec, model, profile.port)
    host = f"--{profile.host_flag}=$(POD_IP)"
    if profile.reads_config_file:
        args = [f"--config={CONFIG_PATH}", host, *infleet_mount_args(spec)]
    else:
        args = ([model.path] if profile.positional_model else []) + [host, *to_flags(settings)]
    args += api_key_args(spec, profile)
    return settings, list(profile.command), [*args, *spec.engine.args]
