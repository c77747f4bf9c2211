"""Logits processors: per-request masks and biases applied to a step's logits, batched.

Built in (engine/core/sampler.py, from `SamplingState` tables): `logit_bias` (added to the
logits) and `min_tokens` (eos and stop_token_ids masked out until that many tokens).

Per-request constraints (structured outputs: JSON schema, regex, choice, grammar) come
from a factory registered here (`register_constraint_factory`). A constraint writes the
tokens it allows into its row of a packed bitmask (int32 [B, ceil(V/32)], bit j of word w
allows token 32*w + j); the sampler unpacks the whole batch's mask on the device in one
go. A constraint must see its previous token before it can fill its next mask, so a row
with a constraint is never scheduled with its token still in flight (no device-side token
feedback for it under async scheduling: it skips a step instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from infleet.engine.messages import StructuredSpec


class RequestConstraint(Protocol):
    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Set the bits of the tokens allowed next in bitmask[row] (int32, host)."""

    def accept(self, token_id: int) -> bool:
        """Advance past a sampled token; False if the constraint does not allow it."""

    def is_terminated(self) -> bool:
        """The constraint is complete: the request ends with finish_reason "stop"."""


ConstraintFactory = Callable[[StructuredSpec, Any], RequestConstraint]
_factory: ConstraintFactory | None = None


def register_constraint_factory(factory: ConstraintFactory | None) -> None:
    """Install (or with None remove) the factory that builds a request's constraint from
    its StructuredSpec and the tokenizer's info."""
    global _factory
    _factory = factory


def build_constraint(spec: StructuredSpec, tokenizer_info: Any) -> RequestConstraint:
    """Raises ValueError when no factory is installed (the request gets a 400)."""
    if _factory is None:
        raise ValueError(f"structured outputs ({spec.kind}) are not available in this engine")
    return _factory(spec, tokenizer_info)


def bitmask_width(vocab_size: int) -> int:
    return -(-vocab_size // 32)


def new_bitmask(rows: int, vocab_size: int) -> torch.Tensor:
    """All tokens allowed (every bit set)."""
    return torch.full((rows, bitmask_width(vocab_size)), -1, dtype=torch.int32)


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Mask out (-inf) every token whose bit is clear; bitmask may live on the host."""
    bits = torch.arange(32, device=logits.device, dtype=torch.int32)
    words = bitmask.to(logits.device, non_blocking=True)
    allowed = ((words.unsqueeze(-1) >> bits) & 1).bool().flatten(1)[:, : logits.shape[-1]]
    logits.masked_fill_(~allowed, float("-inf"))
