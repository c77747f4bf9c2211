"""A request's state inside the engine: its tokens, KV blocks and sampling settings.

One `Sequence` per generated choice. The prompt and the generated tokens live in one list
(`token_ids`), and `num_computed_tokens` says how many of them already have K/V in the
cache: a prefill chunk, a decode and a recompute after preemption are then the same thing
— compute `token_ids[num_computed_tokens:]`, as much as the step's budget allows.
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from infleet.engine.messages import AdapterRef, SamplingParams

# A sampled token the host has not seen yet (async scheduling): the device feeds the real
# one into the next step, and the host writes it here when that step's output arrives.
PLACEHOLDER = -1


class SequenceStatus(enum.Enum):
    FORK_PENDING = "fork-pending"  # choice i > 0 of n: waits for choice 0's prompt prefill
    WAITING = "waiting"
    RESTORING = "restoring"  # admitted; its prefix's KV is being copied up from a lower tier
    RUNNING = "running"
    FINISHED = "finished"


# Arrival order breaks priority ties; a global counter keeps it strict even when two
# requests share a clock tick.
_arrival_counter = itertools.count()


@dataclass(slots=True, eq=False)
class Sequence:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    priority: int = 0  # lower is more urgent (vLLM's convention)
    # Part of every block hash: sequences with different salts (tenants, LoRA adapters)
    # never share KV blocks even when their tokens agree.
    cache_salt: str = ""
    lora: AdapterRef | None = None  # the LoRA adapter it runs with; None: the base model
    index: int = 0  # which of the request's n choices
    arrival_time: float = field(default_factory=time.monotonic)
    arrival_index: int = field(default_factory=lambda: next(_arrival_counter))
    token_ids: list[int] = field(init=False)
    num_computed_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[bytes] = field(default_factory=list)  # one per cached full block
    num_cached_prompt_tokens: int = 0  # prefix-cache hit at first admission
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: str | None = None
    num_preemptions: int = 0
    slot: int | None = None  # row in the persistent batch while running (sampling_state.py)
    seed: int = 0  # this choice's sampling seed (sampling_state.request_seed)
    num_pending: int = 0  # trailing PLACEHOLDER tokens (sampled, still on the device)
    constraint: Any = None  # a logits_processors.RequestConstraint, for structured outputs
    forks: list[Sequence] = field(default_factory=list)  # choices 1..n-1 (on choice 0)
    num_spec_tokens: int = 0  # trailing draft tokens in token_ids (engine/spec/decoding.py)

    def __post_init__(self) -> None:
        self.token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids) :]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def order_key(self) -> tuple[int, int]:
        """Smaller is served first and preempted last."""
        return (self.priority, self.arrival_index)
