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

top-k is a `topk` (no sort); top-p sorts only the top-k candidates when every top-p row
also has a top-k, and the full vocabulary only otherwise. Logprobs come out as tensors for
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
    top_p_within_k: bool = False  # every top-p row has a top-k: sort only k candidates
    min_p: bool = False
    penalties: bool = False
    bias: bool = False
    min_tokens: bool = False
    logprobs: int = -1  # the most top logprobs a row asks for; -1: no row wants logprobs

    @classmethod
    def of(cls, params: list[SamplingParams], vocab_size: int) -> SampleFlags:
        random_rows = [p for p in params if not p.greedy]
        ks = [p.top_k for p in random_rows if 0 < p.top_k < vocab_size]
        top_p_rows = [p for p in random_rows if p.top_p < 1.0]
        want = [p.logprobs for p in params if p.logprobs is not None]
        return cls(
            random=bool(random_rows),
            top_k=max(ks, default=0),
            top_p=bool(top_p_rows),
            top_p_within_k=bool(top_p_rows) and all(0 < p.top_k < vocab_size for p in top_p_rows),
            min_p=any(p.min_p > 0.0 for p in random_rows),
            penalties=any(p.has_penalties for p in params),
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
    if flags.penalties and state.counts is not None and state.prompt_seen is not None:
        logits = _penalise(logits, floats, state.counts[slots], state.prompt_seen[slots])

    tokens = logits.argmax(dim=-1)
    if flags.random:
        temps = floats[:, st.TEMPERATURE]
        greedy = temps == 0.0
        scaled = logits / torch.where(greedy, 1.0, temps).unsqueeze(1)
        probs = filtered_probs(scaled, floats, flags)
        u = uniforms(ints[:, st.SEED], ints[:, st.GENERATED])
        cdf = probs.cumsum(dim=-1)
        drawn = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).squeeze(1)
        drawn = drawn.clamp_(max=logits.shape[-1] - 1)
        tokens = torch.where(greedy, tokens, drawn)
    state.record(slots, tokens)

    result = SampleResult(tokens)
    if raw is not None:
        picked = raw.gather(1, tokens.unsqueeze(1))
        result.logprob = picked.squeeze(1)
        result.rank = (raw > picked).sum(dim=-1) + 1
        if flags.logprobs > 0:
            result.top_logprobs, result.top_ids = raw.topk(flags.logprobs, dim=-1)
    return result


def _penalise(
    logits: torch.Tensor, floats: torch.Tensor, counts: torch.Tensor, prompt_seen: torch.Tensor
) -> torch.Tensor:
    """OpenAI presence/frequency penalties over generated tokens and HF's repetition
    penalty over prompt + generated tokens (rows without penalties are left as they are:
    their factors are 1 and 0)."""
    generated = counts > 0
    rep = floats[:, st.REPETITION].unsqueeze(1)
    factor = torch.where(generated | prompt_seen, rep, 1.0)
    logits = torch.where(logits > 0, logits / factor, logits * factor)
    freq = floats[:, st.FREQUENCY].unsqueeze(1)
    pres = floats[:, st.PRESENCE].unsqueeze(1)
    return logits - freq * counts - pres * generated


def filtered_probs(logits: torch.Tensor, floats: torch.Tensor, flags: SampleFlags) -> torch.Tensor:
    """top-k, top-p, then min-p over temperature-scaled logits; each row's distribution."""
    neg_inf = float("-inf")
    if flags.top_k:
        ks = floats[:, st.TOP_K].long()
        values = logits.topk(flags.top_k, dim=-1).values  # sorted, descending
        kth = values.gather(1, (ks.clamp(min=1) - 1).unsqueeze(1))
        logits = logits.masked_fill((ks > 0).unsqueeze(1) & (logits < kth), neg_inf)
        if flags.top_p_within_k:
            # The top-k values are already sorted: top-p needs only them.
            beyond_k = torch.arange(flags.top_k, device=logits.device) >= ks.unsqueeze(1)
            values = values.masked_fill(beyond_k & (ks > 0).unsqueeze(1), neg_inf)
            logits = _top_p(logits, values, floats[:, st.TOP_P], neg_inf)
    if flags.top_p and not flags.top_p_within_k:
        values = logits.sort(dim=-1, descending=True).values
        logits = _top_p(logits, values, floats[:, st.TOP_P], neg_inf)
    probs = logits.softmax(dim=-1)
    if flags.min_p:
        floor = floats[:, st.MIN_P].unsqueeze(1) * probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < floor, 0.0)
    return probs


def _top_p(
    logits: torch.Tensor, sorted_values: torch.Tensor, top_p: torch.Tensor, neg_inf: float
) -> torch.Tensor:
    """Keep, per row, the most likely tokens until their mass reaches top_p (the first
    always stays): the cut is a threshold value found among the sorted candidates."""
    probs = sorted_values.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs
    keep = before < top_p.unsqueeze(1)
    keep[:, 0] = True
    # The smallest kept value; ties with it stay too. Rows without top-p keep everything.
    threshold = sorted_values.masked_fill(~keep, float("inf")).min(dim=-1, keepdim=True).values
    return logits.masked_fill((logits < threshold) & (top_p < 1.0).unsqueeze(1), neg_inf)
