"""One batched sampler: a step's logits to one token per row, each under its own settings.

Every per-row setting is a gather from the persistent `SamplingState` by slot, so the
number of torch operations a step dispatches depends on which features the batch uses
(`SampleFlags`), never on how many rows it has. Each operation is row-wise, so a row's
token never depends on its neighbours.

Random draws are inverse-CDF sampling with ONE uniform per row, made by a counter-based
generator: u = hash(seed, index of the token being sampled) (splitmix64's finaliser over
int64 tensors). That is each request's own generator, stateless, vectorised over the
batch, and reproducible: the same seed gives the same tokens alone, in any batch, and
after a preemption recompute.

When every sampling row has a top-k, the draw happens among the batch's top-k candidates
(one `topk`, no sort, no other full-vocabulary pass); top-p without a top-k sorts the
vocabulary; neither needs no order at all. Logprobs come out as tensors for
the whole batch (read back with the tokens, no per-row sync).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from infleet.engine.core import sampling_state as st
from infleet.engine.core.logits_processors import apply_bitmask
from infleet.engine.messages import SamplingParams

_MASK64 = (1 << 64) - 1


def _signed(x: int) -> int:
    x &= _MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> n) & ((1 << (64 - n)) - 1)


def uniforms(seed: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """A float32 in (0, 1) per row from (seed, counter): splitmix64, wrapping int64 math."""
    x = seed * _GOLDEN + (counter + 1) * _MIX2
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    x = x ^ _shr(x, 31)
    return (_shr(x, 40).float() + 0.5) / float(1 << 24)


@dataclass(slots=True, frozen=True)
class SampleFlags:
    """Which sampler stages a step needs: decided on the host from the rows' settings."""

    random: bool = False  # some row samples (temperature > 0)
    top_k: int = 0  # the largest top-k among rows (0: none)
    top_p: bool = False
    all_top_k: bool = False  # every random row has a top-k: its candidates, no full sort
    # Some random row has neither top-k nor top-p: it draws in vocabulary order, also when
    # another row makes the batch sort (its token must not depend on its neighbours).
    unordered: bool = False
    min_p: bool = False
    repetition: bool = False  # some row has a repetition penalty
    presence_frequency: bool = False  # some row has a presence or frequency penalty
    bias: bool = False
    min_tokens: bool = False
    logprobs: int = -1  # the most top logprobs a row asks for; -1: no row wants logprobs

    @classmethod
    def of(cls, params: list[SamplingParams], vocab_size: int) -> SampleFlags:
        random_rows = [p for p in params if not p.greedy]
        ks = [p.top_k for p in random_rows if 0 < p.top_k < vocab_size]
        want = [p.logprobs for p in params if p.logprobs is not None]
        return cls(
            random=bool(random_rows),
            top_k=max(ks, default=0),
            top_p=any(p.top_p < 1.0 for p in random_rows),
            all_top_k=len(ks) == len(random_rows),
            unordered=any(not 0 < p.top_k < vocab_size and p.top_p >= 1.0 for p in random_rows),
            min_p=any(p.min_p > 0.0 for p in random_rows),
            repetition=any(p.repetition_penalty != 1.0 for p in params),
            presence_frequency=any(
                p.presence_penalty != 0.0 or p.frequency_penalty != 0.0 for p in params
            ),
            bias=any(p.logit_bias for p in params),
            min_tokens=any(p.min_tokens > 0 for p in params),
            logprobs=max(want, default=-1),
        )


@dataclass(slots=True)
class SampleResult:
    """Device tensors for the batch; logprob fields are None when no row wants them."""

    tokens: torch.Tensor  # int64 [B]
    logprob: torch.Tensor | None = None  # [B] the sampled token's
    rank: torch.Tensor | None = None  # [B] 1 = the most likely token
    top_ids: torch.Tensor | None = None  # [B, k]
    top_logprobs: torch.Tensor | None = None  # [B, k]


def sample(
    logits: torch.Tensor,
    slots: torch.Tensor,
    state: st.SamplingState,
    flags: SampleFlags,
    bitmask: torch.Tensor | None = None,
) -> SampleResult:
    """logits float32 [B, V] (modified in place); slots int64 [B] on the device; bitmask
    int32 [B, ceil(V/32)] from the rows' constraints. Records the tokens in `state`."""
    floats, ints = state.floats[slots], state.ints[slots]
    raw = torch.log_softmax(logits, dim=-1) if flags.logprobs >= 0 else None

    # Logits processors: the request's own masks and biases, before anything else.
    if flags.bias and state.bias is not None:
        logits += state.bias[slots]
    if flags.min_tokens and state.stop_mask is not None:
        early = (ints[:, st.GENERATED] < ints[:, st.MIN_TOKENS]).unsqueeze(1)
        logits.masked_fill_(state.stop_mask[slots] & early, float("-inf"))
    if bitmask is not None:
        apply_bitmask(logits, bitmask)
    if (flags.repetition or flags.presence_frequency) and state.counts is not None:
        logits = _penalise(logits, floats, flags, state, slots)

    if flags.random:
        # The candidates: every random row's top-k (no sort), else the sorted vocabulary
        # where top-p or a top-k needs an order, else the vocabulary as it is.
        if flags.all_top_k:
            values, ids = logits.topk(flags.top_k, dim=-1)
        elif flags.top_p or flags.top_k:
            values, ids = logits.sort(dim=-1, descending=True)
        else:
            values, ids = logits, None
        temps = floats[:, st.TEMPERATURE]
        greedy = temps == 0.0
        probs = candidate_probs(values, floats, flags, ordered=ids is not None)
        u = uniforms(ints[:, st.SEED], ints[:, st.GENERATED])
        cdf = probs.cumsum(dim=-1)
        at = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1))
        at = at.clamp_(max=values.shape[-1] - 1)
        if ids is None:
            drawn, best = at.squeeze(1), logits.argmax(dim=-1)
        else:
            drawn, best = ids.gather(1, at).squeeze(1), ids[:, 0]
            if flags.unordered:
                drawn = _unordered_draws(logits, floats, flags, u, drawn)
        tokens = torch.where(greedy, best, drawn)
    else:
        tokens = logits.argmax(dim=-1)
    state.record(slots, tokens)

    result = SampleResult(tokens)
    if raw is not None:
        picked = raw.gather(1, tokens.unsqueeze(1))
        result.logprob = picked.squeeze(1)
        result.rank = (raw > picked).sum(dim=-1) + 1
        if flags.logprobs > 0:
            result.top_logprobs, result.top_ids = raw.topk(flags.logprobs, dim=-1)
    return result


def _unordered_draws(
    logits: torch.Tensor,
    floats: torch.Tensor,
    flags: SampleFlags,
    u: torch.Tensor,
    drawn: torch.Tensor,
) -> torch.Tensor:
    """Rows without top-k and top-p in a batch that sorted for others: their draw in
    vocabulary order, as they would draw alone (same uniform, same distribution)."""
    probs = candidate_probs(logits, floats, flags, ordered=False)
    cdf = probs.cumsum(dim=-1)
    at = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).clamp_(max=logits.shape[-1] - 1)
    own_order = (floats[:, st.TOP_K] > 0) | (floats[:, st.TOP_P] < 1.0)
    return torch.where(own_order, drawn, at.squeeze(1))


def _penalise(
    logits: torch.Tensor,
    floats: torch.Tensor,
    flags: SampleFlags,
    state: st.SamplingState,
    slots: torch.Tensor,
) -> torch.Tensor:
    """OpenAI presence/frequency penalties over generated tokens and HF's repetition
    penalty over prompt + generated tokens (rows without penalties are left as they are:
    their factors are 1 and 0). Only the kinds some row uses cost a pass over the vocab."""
    assert state.counts is not None and state.prompt_seen is not None
    counts = state.counts[slots]
    generated = counts > 0
    if flags.repetition:
        rep = floats[:, st.REPETITION].unsqueeze(1)
        factor = torch.where(generated | state.prompt_seen[slots], rep, 1.0)
        logits = torch.where(logits > 0, logits / factor, logits * factor)
    if flags.presence_frequency:
        freq = floats[:, st.FREQUENCY].unsqueeze(1)
        pres = floats[:, st.PRESENCE].unsqueeze(1)
        logits = logits - freq * counts - pres * generated
    return logits


def candidate_probs(
    values: torch.Tensor, floats: torch.Tensor, flags: SampleFlags, ordered: bool
) -> torch.Tensor:
    """Each row's sampling distribution over its candidates `values` (logits; sorted in
    descending order when `ordered`): temperature, then top-k and top-p (which need the
    order), then min-p. Unnormalised where tokens were cut (the draw scales by the total)."""
    temps = floats[:, st.TEMPERATURE]
    scaled = values / torch.where(temps == 0.0, 1.0, temps).unsqueeze(1)
    if ordered and flags.top_k:
        ks = floats[:, st.TOP_K].long().unsqueeze(1)
        rank = torch.arange(values.shape[-1], device=values.device)
        scaled = scaled.masked_fill((rank >= ks) & (ks > 0), float("-inf"))
    probs = scaled.softmax(dim=-1)
    if ordered and flags.top_p:
        # Drop a token when the more likely ones already reach top_p (the first stays).
        before = probs.cumsum(dim=-1) - probs
        cut = before >= floats[:, st.TOP_P].unsqueeze(1)
        cut[:, 0] = False
        probs = probs.masked_fill(cut, 0.0)
    if flags.min_p:
        top = probs[:, :1] if ordered else probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < floats[:, st.MIN_P].unsqueeze(1) * top, 0.0)
    return probs
