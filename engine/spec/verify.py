"""Verification: the target's own samples decide which draft tokens stand.

Drafts are proposed deterministically (a lookup, or the draft model's argmax), so the
draft distribution q is one-hot on the draft token x. The standard speculative-sampling
rule then accepts x with probability min(1, p(x) / q(x)) = p(x) and, on rejection,
samples from the residual (p - q)+ normalised, which is p with x removed. Drawing the
target's own sample t ~ p at that position and accepting iff t == x does exactly that:
P(accept) = p(x), and a rejected t is distributed as p conditioned on t != x. The kept
tokens are therefore distributed as the target's, for every sampling parameter the sampler
supports: each position is sampled by the one sampler (engine/core/sampler.py) with the
row's penalties, bias, min_tokens mask and counter-based seed, after the accepted tokens
before it were recorded. And because t is the same sample the row would have drawn without
speculation (same seed, same counter), a seeded request's tokens do not depend on whether
speculation is on, nor on its batch; greedy rows accept exactly the argmax.

The walk is position by position over the batch's rows still accepting: 1 + max(drafts)
sampler calls per step, each vectorised over the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from infleet.engine.core.sampler import SampleFlags, SampleResult, sample
from infleet.engine.core.sampling_state import SamplingState
from infleet.engine.messages import SamplingParams


@dataclass(slots=True)
class Verified:
    """Per row: the tokens it keeps (accepted drafts, then the target's own sample), and
    each sampler result with the rows it covered (for logprobs)."""

    tokens: list[list[int]]
    results: list[tuple[list[int], list[int], SampleResult]] = field(default_factory=list)
    # (rows, position per row, result)


def verify(
    logits: torch.Tensor,
    first_rows: list[int],
    drafts: list[list[int]],
    slots: list[int],
    params: list[SamplingParams],
    state: SamplingState,
    vocab_size: int,
    bitmask: torch.Tensor | None,
) -> Verified:
    """logits [N, V]: row first_rows[r] + j scores the token after row r's j-th input
    position (j = 0 checks drafts[r][0]). bitmask: one row per r (rows with a constraint
    have no drafts, so it applies at position 0 only)."""
    out = Verified([[] for _ in first_rows])
    active = list(range(len(first_rows)))
    j = 0
    device = logits.device
    while active:
        picked = logits[torch.tensor([first_rows[r] + j for r in active], device=device)]
        flags = SampleFlags.of([params[r] for r in active], vocab_size)
        mask = bitmask if j == 0 else None
        res = sample(picked, torch.tensor([slots[r] for r in active], device=device), state,
                     flags, mask)  # fmt: skip
        out.results.append((active, [len(out.tokens[r]) for r in active], res))
        still = []
        for r, t in zip(active, res.tokens.tolist(), strict=True):
            out.tokens[r].append(t)
            if j < len(drafts[r]) and drafts[r][j] == t:
                still.append(r)
        active = still
        j += 1
    return out
