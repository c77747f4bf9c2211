"""How fast one replica serves: a roofline step-time model of continuous batching.

One engine step runs every running sequence's next decode token plus, while prompts
wait, a prefill chunk that fills the step's token budget (chunked prefill):

    step_s(B, C, K) = overhead_s + max(weights_s + kv_s_per_token * K,
                                       prefill_s_per_token * (B + C))

B decode tokens, C prefill tokens, K tokens of KV the step reads. Decode is bound by
memory bandwidth (weights plus KV read once per step), prefill by compute. Defaults are
an H100 SXM 80GB serving Llama-3.1-8B in bf16 (docs/autoscaling.md has the arithmetic
and its sources); `from_bench` fits them to an `infleet bench` run.
"""

from __future__ import annotations

from dataclasses import dataclass

from infleet.autoscaler.spec import CapacityPrior

# H100 SXM: 3.35 TB/s HBM3, 989 TFLOP/s dense bf16 (NVIDIA datasheet). Llama-3.1-8B:
# 8.03e9 parameters (16.06 GB bf16), 32 layers x 8 KV heads x 128 dims, K and V in bf16.
_HBM_BYTES_S = 3.35e12 * 0.75  # achieved bandwidth in decode kernels
_FLOPS = 989e12 * 0.5  # achieved in prefill GEMMs
_PARAMS = 8.03e9
_KV_BYTES_PER_TOKEN = 2 * 32 * 8 * 128 * 2


@dataclass(slots=True)
class ReplicaModel:
    overhead_s: float = 1.5e-3  # scheduling, sampling and launch per step
    weights_s: float = 2 * _PARAMS / _HBM_BYTES_S
    kv_s_per_token: float = _KV_BYTES_PER_TOKEN / _HBM_BYTES_S
    prefill_s_per_token: float = 2 * _PARAMS / _FLOPS
    # ~52 GB of KV after weights and activations at 90% of 80 GB.
    kv_capacity_tokens: int = 400_000
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048

    def __post_init__(self) -> None:
        for name in ("weights_s", "kv_s_per_token", "prefill_s_per_token"):
            if getattr(self, name) <= 0:
                raise ValueError(f"replica model: {name} must be > 0")
        if self.kv_capacity_tokens <= 0 or self.max_num_seqs <= 0:
            raise ValueError("replica model: kv_capacity_tokens and max_num_seqs must be > 0")
        if self.max_num_batched_tokens <= self.max_num_seqs:
            raise ValueError(
                "replica model: max_num_batched_tokens must exceed max_num_seqs "
                "(a step must fit every decode plus some prefill)"
            )

    def step_s(self, decodes: float, chunk: float, kv_tokens: float) -> float:
        memory = self.weights_s + self.kv_s_per_token * kv_tokens
        compute = self.prefill_s_per_token * (decodes + chunk)
        return self.overhead_s + (memory if memory > compute else compute)

    def decode_tok_s(self, batch: int, context: int) -> float:
        """Output tokens per second of a replica decoding `batch` sequences of `context`."""
        return batch / self.step_s(batch, 0, batch * context)

    def prefill_tok_s(self) -> float:
        """Prefill tokens per second with a full chunk and nothing decoding."""
        chunk = self.max_num_batched_tokens
        return chunk / self.step_s(0, chunk, 0)


def prior_of(model: ReplicaModel, context_tokens: int = 1152) -> CapacityPrior:
    """The policy's capacity prior from a replica model: what a calibration profile gives
    (prefill with nothing decoding; decode at a full batch of ~1k-token sequences)."""
    return CapacityPrior(
        model.prefill_tok_s(), model.decode_tok_s(model.max_num_seqs, context_tokens)
    )
