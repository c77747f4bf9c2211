"""The engine that serves the model in each replica and how it is configured."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from infleet.api.base import CrdModel, Quantity, Rule, field
from infleet.api.model import NAME_PATTERN, HostPathCache

EngineKind = Literal["infleet", "vllm", "sglang", "tgi"]


class EnvVar(CrdModel):
    """An environment variable for the engine container (core/v1 EnvVar)."""

    name: str = field(description="Variable name.", min_length=1)
    value: str | None = field(None, description="Literal value.")
    value_from: dict[str, Any] | None = field(
        None, description="A core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, ...)."
    )


class Parallelism(CrdModel):
    """How one replica splits the model over its GPUs."""

    tensor: int = field(1, ge=1, description="Tensor-parallel degree.")
    pipeline: int = field(1, ge=1, description="Pipeline-parallel degree.")
    expert: int = field(1, ge=1, description="Expert-parallel degree (MoE models).")


class KVTierVolume(CrdModel):
    """The node-local volume under the NVMe KV tier. Default: an emptyDir (survives a
    container restart, not the pod), its sizeLimit above the tier's size."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!(has(self.storageClassName) && has(self.hostPath))",
            "engine.kvCache.nvmeVolume takes at most one of storageClassName and hostPath",
            lambda v: v.storage_class_name is None or v.host_path is None,
        ),
    )

    storage_class_name: str | None = field(
        None,
        description="A generic ephemeral volume from this storage class (e.g. local NVMe).",
    )
    host_path: HostPathCache | None = field(
        None,
        description="A node directory that outlives the pod (the platform policy must list it).",
    )


class KVCacheSpec(CrdModel):
    """The KV cache: its dtype and the tiers below GPU memory."""

    dtype: Literal["auto", "fp8"] = field(
        "auto", description="auto (the model dtype) or fp8 (e4m3)."
    )
    dram: Quantity | None = field(None, description="Host-memory KV tier size, e.g. 32Gi.")
    nvme: Quantity | None = field(None, description="Local NVMe KV tier size, e.g. 200Gi.")
    nvme_volume: KVTierVolume | None = field(
        None, description="Where the NVMe tier lives on the node (default: an emptyDir)."
    )


class SpeculativeSpec(CrdModel):
    """Speculative decoding (method names as vLLM's --speculative-config spells them)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!(self.method in ['draft_model', 'eagle']) || has(self.draftModel)",
            "engine.speculative.draftModel is required for methods draft_model and eagle",
            lambda s: s.method not in ("draft_model", "eagle") or s.draft_model is not None,
        ),
        Rule(
            "self.method in ['draft_model', 'eagle'] || !has(self.draftModel)",
            "engine.speculative.draftModel is only for methods draft_model and eagle",
            lambda s: s.method in ("draft_model", "eagle") or s.draft_model is None,
        ),
        Rule(
            "(self.method == 'self_draft') == has(self.selfDraftLayers)",
            "engine.speculative.selfDraftLayers is required for method self_draft, and only for it",
            lambda s: (s.method == "self_draft") == (s.self_draft_layers is not None),
        ),
        Rule(
            "self.promptLookupMin <= self.promptLookupMax",
            "engine.speculative.promptLookupMin must not exceed promptLookupMax",
            lambda s: s.prompt_lookup_min <= s.prompt_lookup_max,
        ),
    )

    method: Literal["none", "ngram", "draft_model", "self_draft", "eagle"] = field(
        "none",
        description="none; ngram (prompt lookup); draft_model (a smaller model with the same "
        "tokenizer); self_draft (the target's first selfDraftLayers layers; infleet only); "
        "eagle (EAGLE heads; vLLM and SGLang).",
    )
    draft_model: str | None = field(
        None, description="draft_model / eagle: the draft or EAGLE heads (an HF repo id or a path)."
    )
    num_tokens: int = field(4, ge=1, le=16, description="Tokens proposed per step.")
    prompt_lookup_max: int = field(
        4, ge=1, le=64, description="ngram: the longest n-gram looked up in the context."
    )
    prompt_lookup_min: int = field(
        2, ge=1, le=64, description="ngram: the shortest n-gram looked up in the context."
    )
    self_draft_layers: int | None = field(
        None, ge=1, description="self_draft: how many of the target's first layers draft."
    )


class LabelSelectorRequirement(CrdModel):
    """One metav1.LabelSelectorRequirement."""

    key: str = field(description="The label key.", min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[str] = field(
        default_factory=list, description="Values for In and NotIn; empty otherwise."
    )


class LabelSelector(CrdModel):
    """A metav1.LabelSelector (here over a namespace's labels)."""

    match_labels: dict[str, str] = field(
        default_factory=dict, description="Labels the namespace must carry."
    )
    match_expressions: list[LabelSelectorRequirement] = field(
        default_factory=list, description="Requirements on the namespace's labels."
    )

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for expr in self.match_expressions:
            have = labels.get(expr.key)
            ok = {
                "In": have is not None and have in expr.values,
                "NotIn": have not in expr.values,
                "Exists": expr.key in labels,
                "DoesNotExist": expr.key not in labels,
            }[expr.operator]
            if not ok:
                return False
        return True


class LoRASpec(CrdModel):
    """LoRA adapter slots, and which tenants may attach adapters (LoRAAdapter objects)."""

    max_adapters: int = field(0, ge=0, description="Adapters resident at once; 0 disables LoRA.")
    max_cpu_adapters: int | None = field(
        None, ge=1, description="Adapters kept in host memory (default: maxAdapters)."
    )
    max_rank: int = field(16, ge=1, le=512, description="Largest adapter rank accepted.")
    allowed_namespaces: list[str] = field(
        default_factory=list,
        description="Namespaces whose LoRAAdapters may attach (the service's own always "
        "may). Admitting another namespace makes the service authenticated: each admitted "
        "namespace gets an API key in the Secret <service>-api-key.",
    )
    namespace_selector: LabelSelector | None = field(
        None, description="Namespaces whose labels match may attach LoRAAdapters too."
    )

    def admits_others(self) -> bool:
        """Whether namespaces other than the service's may attach (then it authenticates)."""
        return bool(self.allowed_namespaces) or self.namespace_selector is not None


class ApiKeysSpec(CrdModel):
    """The engine's API keys, from a Secret in the service's namespace."""

    secret_name: str = field(
        description="The Secret: its `api-key` holds one key (format key), or its "
        "`keys.yaml` maps tenants to SHA-256 key hashes (format tenants).",
        pattern=NAME_PATTERN,
        max_length=253,
    )
    format: Literal["key", "tenants"] = field(
        "key",
        description="key: one key for every caller, passed to each engine kind its own way. "
        "tenants: the keys file (tenant -> key hashes, reloaded when the Secret changes); "
        "the infleet engine only.",
    )


class EngineSpec(CrdModel):
    """Which engine runs the model and its settings."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.apiKeys) || self.apiKeys.format == 'key' || self.kind == 'infleet'",
            "engine.apiKeys.format tenants needs engine.kind infleet; other kinds take one key "
            "(format key)",
            lambda s: s.api_keys is None or s.api_keys.format == "key" or s.kind == "infleet",
        ),
        Rule(
            "self.kind != 'tgi' || (self.parallelism.pipeline == 1 && self.parallelism.expert == 1)",
            "engine.kind tgi supports tensor parallelism only: set engine.parallelism.pipeline "
            "and engine.parallelism.expert to 1",
            lambda s: (
                s.kind != "tgi" or (s.parallelism.pipeline == 1 and s.parallelism.expert == 1)
            ),
        ),
    )

    kind: EngineKind = field(
        "infleet",
        description="infleet (the bundled engine), vllm, sglang or tgi.",
    )
    image: str | None = field(
        None, description="Container image; unset uses the operator's default for the kind."
    )
    args: list[str] = field(
        default_factory=list, description="Extra engine flags, appended last (they win)."
    )
    env: list[EnvVar] = field(
        default_factory=list, description="Extra environment variables for the engine."
    )
    parallelism: Parallelism = field(
        default_factory=Parallelism, description="Tensor / pipeline / expert parallelism."
    )
    quantization: Literal["none", "fp8", "fp4"] = field(
        "none",
        description=(
            "Weight quantization: none, fp8 or fp4. infleet: fp8 is W8A8 (e4m3 weights per "
            "channel, activations per token) and fp4 is NVFP4 weight-only (W4A16); both run "
            "a pre-quantized checkpoint (compressed-tensors or ModelOpt) or quantize an "
            "unquantized one at load. vllm and sglang: fp8, and fp4 as a pre-quantized "
            "NVFP4 checkpoint (modelopt_fp4). tgi: fp8 only."
        ),
    )
    kv_cache: KVCacheSpec = field(default_factory=KVCacheSpec, description="The KV cache.")
    speculative: SpeculativeSpec = field(
        default_factory=SpeculativeSpec, description="Speculative decoding."
    )
    lora: LoRASpec = field(default_factory=LoRASpec, description="LoRA adapter slots.")
    api_keys: ApiKeysSpec | None = field(
        None,
        description="API keys the engine requires on its OpenAI endpoints (/health stays "
        "open for the probes); unset: no authentication.",
    )
    shutdown_grace_seconds: int = field(
        30,
        ge=0,
        le=3600,
        description="On SIGTERM, seconds the engine keeps finishing in-flight requests; "
        "the pod's terminationGracePeriodSeconds is set above it.",
    )
