"""What crosses between the API process and the engine core: msgspec Structs.

Both sides import only this module to talk. msgspec encodes these typed Structs to
msgpack in C (a list of token ids is one msgpack array, not a pickled Python object per
int) and decodes them straight back into the typed classes, validating as it goes; for
these shapes that is about ten times faster than pickle and safe against a message that
is not what it claims to be. Messages to the core are a tagged union (`ToCore`).
"""

from __future__ import annotations

import msgspec


class StructuredSpec(msgspec.Struct, frozen=True):
    """A structured-output request; the core turns it into a per-request constraint
    through the factory registered in engine/core/logits_processors.py."""

    kind: str  # json_schema, json_object, regex, choice, grammar
    value: str


class SamplingParams(msgspec.Struct):
    """How one request samples. Stop *strings* are matched on the API side, where text is;
    the core knows only token-level stops (eos, stop_token_ids, max_tokens, min_tokens)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 (or -1) keeps the whole vocabulary
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    # None: no logprobs; N >= 0: the sampled token's logprob plus the N most likely tokens.
    logprobs: int | None = None
    skip_special_tokens: bool = True
    n: int = 1  # choices; they share the prompt's KV (one prefill, then a fork)
    min_tokens: int = 0  # eos and stop_token_ids are masked out until this many tokens
    logit_bias: dict[int, float] | None = None
    structured: StructuredSpec | None = None
    include_stop_str_in_output: bool = False  # API side only, like `stop`

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return (
            self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
            or self.repetition_penalty != 1.0
        )


class AdapterRef(msgspec.Struct, frozen=True):
    """The LoRA adapter a request runs with: its served name, its checked directory on the
    core's disk, and the id of this load (a name unloaded and loaded again gets a new id, so
    neither the core's adapter cache nor its prefix cache mixes the two)."""

    name: str
    path: str
    id: int

    def salted(self, cache_salt: str) -> str:
        """The prefix-cache salt of a request with this adapter: its blocks are never
        shared with the base model's or another adapter's (on top of the tenant salt)."""
        return f"{cache_salt}\x1elora:{self.id}"


class CoreRequest(msgspec.Struct, tag="add"):
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    priority: int = 0  # lower is more urgent (vLLM's convention)
    cache_salt: str = ""  # part of every block hash: tenants never share KV blocks
    arrival_time: float = 0.0  # time.monotonic() on the API side; 0: when the core got it
    lora: AdapterRef | None = None  # None: the base model


class Abort(msgspec.Struct, tag="abort"):
    request_ids: list[str]
    index: int | None = None  # only this choice of each (a stop string ended it); None: all


class Shutdown(msgspec.Struct, tag="shutdown"):
    # Seconds left for the core's own shutdown work (the KV tiers' NVMe write queue);
    # None: --shutdown-grace-seconds.
    grace_s: float | None = None


class UnloadAdapter(msgspec.Struct, tag="unload_adapter"):
    """The API side unloaded an adapter: the core forgets it once no request uses it."""

    id: int


ToCore = CoreRequest | Abort | Shutdown | UnloadAdapter


class TokenLogprobs(msgspec.Struct, array_like=True):
    """A sampled token's logprob under the model (before penalties and temperature), its
    rank (1 = most likely), and the most likely alternatives. Ids only: the API side makes
    their text and bytes."""

    token_id: int
    logprob: float
    rank: int
    top_ids: list[int]
    top_logprobs: list[float]

    @property
    def top(self) -> list[tuple[int, float]]:
        return list(zip(self.top_ids, self.top_logprobs, strict=True))


class CompletionDelta(msgspec.Struct, array_like=True):
    """New tokens of one choice since its previous delta; finish_reason set ends it."""

    request_id: str
    index: int  # choice 0..n-1
    new_token_ids: list[int]
    logprobs: list[TokenLogprobs] | None
    finish_reason: str | None  # stop, length, abort, error
    stop_token_id: int | None  # the eos / stop token that ended it (not part of the text)
    num_prompt_tokens: int
    num_cached_tokens: int  # prompt tokens found in the prefix cache
    error: str | None = None


class LoRAStats(msgspec.Struct, array_like=True):
    """The core's adapter state after a step (lora/metrics.py exports it)."""

    max_loras: int
    running: list[str]  # names of the adapters of running requests
    waiting: list[str]
    # AdapterCache's running totals (lora/cache.py CacheStats).
    host_loads: int = 0
    device_loads: int = 0
    host_evictions: int = 0
    device_evictions: int = 0
    load_failures: int = 0


class CoreStats(msgspec.Struct, array_like=True):
    """Gauges and running totals the core owns; the API side exports them as metrics."""

    waiting: int = 0
    running: int = 0
    kv_usage: float = 0.0
    preemptions_total: int = 0
    prefix_queries_total: int = 0
    prefix_hits_total: int = 0
    prompt_tokens_computed_total: int = 0  # prompt tokens the model actually ran (not cached)
    # CoreRequests the core loop has taken in (engine/server/core_loop.py sets it): the API
    # side counts the ones it sent beyond this as waiting too (the 429 bound).
    requests_received_total: int = 0
    kv_restored_tokens_total: int = 0  # prompt tokens restored from the KV tiers, not computed
    # The KV tiers' metrics (kv_tiering/metrics.py), recorded in the core's process: their
    # Prometheus text, which the API side's /metrics appends.
    tier_metrics: bytes = b""
    # Speculative decoding (engine/spec/), vLLM's meanings; spec_enabled is the load
    # switch's last decision (1 on, 0 off; -1: speculation not configured).
    spec_enabled: int = -1
    spec_num_drafts_total: int = 0
    spec_num_draft_tokens_total: int = 0
    spec_num_accepted_tokens_total: int = 0
    spec_num_accepted_tokens_per_pos_total: list[int] = msgspec.field(default_factory=list)
    lora: LoRAStats | None = None  # None: LoRA is off


class CoreOutputs(msgspec.Struct, tag="outputs"):
    deltas: list[CompletionDelta]
    stats: CoreStats
    # Prefix-cache blocks (their chained hashes) evicted in this step, in order: the API
    # side's router feed (engine/server/router_feed.py) unpublishes their keys.
    evicted: list[bytes] = msgspec.field(default_factory=list)


class CoreReady(msgspec.Struct, tag="ready"):
    """The core's first message: what the API side needs to validate and report."""

    model_name: str
    max_model_len: int
    vocab_size: int
    num_blocks: int
    block_size: int
    kv_bytes_per_block: int
    device: str
    dtype: str
    attention_backend: str
    eos_token_ids: list[int]
    prefix_caching: bool = True
    # The decoder's shape, for the API side's adapter checks (no weights there).
    hidden_size: int = 0
    num_layers: int = 0
    q_size: int = 0
    kv_size: int = 0
    intermediate_size: int = 0


FromCore = CoreOutputs | CoreReady


# One encoder for everything; a decoder per direction checks the message's type.
encode = msgspec.msgpack.Encoder().encode
decode_to_core = msgspec.msgpack.Decoder(ToCore).decode
decode_from_core = msgspec.msgpack.Decoder(FromCore).decode
