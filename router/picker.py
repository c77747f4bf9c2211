"""The routing decision, a pure function: which replica gets this request.

Each eligible replica gets a cost in tokens of work the request would wait behind or
redo there (docs/router.md has the worked numbers):

    cost = key_tokens * (request_keys - cached_keys)    prefill the request must redo
         + queued_request_tokens * waiting              work queued ahead of it
         + running_request_tokens * running             decodes it shares steps with
         + adapter_load_tokens  (if the adapter is not loaded there)

and the cheapest wins. A replica known not to have the requested adapter (it publishes
its adapters, and this one is not among them) is not considered while another usable
replica may have it: the engine would answer 404 (a replica still loading adapters
during a scale-out). A cached prefix therefore pulls a request toward its replica only
until that replica's queue outweighs the prefill saved, so a popular prefix spreads over
replicas instead of piling onto one. Before any of that, a hard cut-off: a replica at
`max_waiting` queued requests or `max_kv_usage` is saturated and gets nothing while some
replica is not. Draining and unready replicas never get anything.

Ties break by rendezvous hashing on `tie_key` (the request's first prefix key), so new
conversations spread evenly and a conversation's turns agree even before the index knows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from infleet.router.prefix_keys import KEY_TOKENS

Reason = Literal["prefix", "adapter", "load", "saturated", "no_replica"]
REASONS: tuple[Reason, ...] = ("prefix", "adapter", "load", "saturated", "no_replica")


@dataclass(frozen=True, slots=True)
class Weights:
    """The picker's knobs; the defaults are explained with worked numbers in docs/router.md."""

    key_tokens: int = KEY_TOKENS  # tokens one prefix key stands for
    queued_request_tokens: int = 512  # prefill work one waiting request puts ahead
    running_request_tokens: int = 32  # the slowdown one running decode adds
    adapter_load_tokens: int = 4096  # loading an adapter the replica lacks
    max_waiting: int = 16  # saturated at this many waiting requests...
    max_kv_usage: float = 0.9  # ...or at this KV usage


@dataclass(frozen=True, slots=True)
class Candidate:
    """One replica as the picker sees it for this request."""

    name: str
    ready: bool = True
    draining: bool = False
    waiting: int = 0
    running: int = 0
    kv_usage: float | None = None  # None: unknown (no published state)
    cached_keys: int = 0  # leading prefix keys of this request the replica holds
    has_adapter: bool = False  # the requested adapter is loaded there
    lacks_adapter: bool = False  # the replica says it has not loaded the requested adapter


@dataclass(frozen=True, slots=True)
class Decision:
    replica: str | None
    reason: Reason
    cached_keys: int = 0  # prefix keys the chosen replica holds


def eligible(c: Candidate) -> bool:
    return c.ready and not c.draining


def saturated(c: Candidate, w: Weights) -> bool:
    kv_full = c.kv_usage is not None and c.kv_usage >= w.max_kv_usage
    return c.waiting >= w.max_waiting or kv_full


def cost(c: Candidate, request_keys: int, wants_adapter: bool, w: Weights) -> int:
    uncached = max(request_keys - c.cached_keys, 0)
    adapter = w.adapter_load_tokens if wants_adapter and not c.has_adapter else 0
    return (
        w.key_tokens * uncached
        + w.queued_request_tokens * c.waiting
        + w.running_request_tokens * c.running
        + adapter
    )


def rendezvous(tie_key: int, name: str) -> int:
    digest = hashlib.blake2b(f"{tie_key}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def pick(
    candidates: Sequence[Candidate],
    *,
    request_keys: int,
    wants_adapter: bool = False,
    tie_key: int = 0,
    weights: Weights | None = None,
) -> Decision:
    """The replica for a request of `request_keys` prefix keys (see the module doc)."""
    w = weights or Weights()
    usable = [c for c in candidates if eligible(c)]
    if not usable:
        return Decision(None, "no_replica")
    if wants_adapter:
        # Before the saturation cut-off: a saturated replica with the adapter still
        # serves it; one without answers 404. With none that may have it, each is asked
        # (the proxy moves on after a 404).
        holders = [c for c in usable if not c.lacks_adapter]
        narrowed = bool(holders) and len(holders) < len(usable)
        usable = holders or usable
    else:
        narrowed = False
    pool = [c for c in usable if not saturated(c, w)]
    all_saturated = not pool
    pool = pool or usable
    best = min(
        pool,
        key=lambda c: (cost(c, request_keys, wants_adapter, w), -rendezvous(tie_key, c.name)),
    )
    reason = _reason(best, pool, all_saturated, wants_adapter, narrowed)
    return Decision(best.name, reason, best.cached_keys)


def _reason(
    best: Candidate, pool: list[Candidate], all_saturated: bool, adapter: bool, narrowed: bool
) -> Reason:
    """What set the winner apart: its adapter where others lack it, its cached prefix,
    its adapter where others would load it, else its load."""
    if all_saturated:
        return "saturated"
    if narrowed:
        return "adapter"
    if best.cached_keys > min(c.cached_keys for c in pool):
        return "prefix"
    if adapter and best.has_adapter and not all(c.has_adapter for c in pool):
        return "adapter"
    return "load"
