"""Turns a step's logits into one token per sequence, each under its own settings.

Every operation works row by row, so a sequence's token never depends on what else is in
the batch. Random draws use the "exponential race" (argmax of p / q with q ~ Exp(1), which
picks token i with probability p_i); a seeded request draws its q from a generator seeded
by (seed, index of the token being sampled), so the same seed gives the same tokens alone,
in any batch, and after a preemption recompute.
"""

from __future__ import annotations

import random

import torch

from infleet.engine.core.sequence import Sequence
from infleet.engine.messages import SamplingParams, TokenLogprobs

_SEED_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, step) over the seed space


class Sampler:
    def __init__(self) -> None:
        self._generators: dict[torch.device, torch.Generator] = {}

    def __call__(
        self, logits: torch.Tensor, seqs: list[Sequence]
    ) -> tuple[list[int], list[TokenLogprobs | None]]:
        """logits: float32 [len(seqs), vocab]; returns token ids and optional logprobs."""
        params = [s.params for s in seqs]
        # Logprobs describe the model's own distribution, before penalties and temperature.
        want_logprobs = [i for i, p in enumerate(params) if p.logprobs is not None]
        raw_logprobs = torch.log_softmax(logits[want_logprobs], dim=-1) if want_logprobs else None

        logits = apply_penalties(logits, seqs)
        tokens = torch.empty(len(seqs), dtype=torch.long, device=logits.device)
        greedy = [i for i, p in enumerate(params) if p.greedy]
        if greedy:
            tokens[greedy] = logits[greedy].argmax(dim=-1)
        rand = [i for i, p in enumerate(params) if not p.greedy]
        if rand:
            probs = filtered_probs(logits[rand], [params[i] for i in rand])
            q = torch.empty_like(probs)
            for row, i in enumerate(rand):
                q[row].exponential_(generator=self._generator(seqs[i], logits.device))
            tokens[rand] = (probs / q).argmax(dim=-1)
        token_list = tokens.tolist()

        out: list[TokenLogprobs | None] = [None] * len(seqs)
        if raw_logprobs is not None:
            k = max(params[i].logprobs or 0 for i in want_logprobs)
            top_vals, top_ids = raw_logprobs.topk(k, dim=-1)
            picked = raw_logprobs.gather(1, tokens[want_logprobs].unsqueeze(1))
            ranks = (raw_logprobs > picked).sum(dim=-1) + 1
            picked_l, ranks_l = picked.squeeze(1).tolist(), ranks.tolist()
            ids_l, vals_l = top_ids.tolist(), top_vals.tolist()
            for row, i in enumerate(want_logprobs):
                n = params[i].logprobs or 0
                out[i] = TokenLogprobs(
                    token_list[i], picked_l[row], ranks_l[row], ids_l[row][:n], vals_l[row][:n]
                )
        return token_list, out

    def _generator(self, seq: Sequence, device: torch.device) -> torch.Generator:
        seed = seq.params.seed
        if seed is None:
            gen = self._generators.get(device)
            if gen is None:
                gen = torch.Generator(device=device)
                gen.manual_seed(random.SystemRandom().getrandbits(63))
                self._generators[device] = gen
            return gen
        gen = torch.Generator(device=device)
        gen.manual_seed((seed * _SEED_MIX + seq.num_output_tokens) % (1 << 63))
        return gen


def apply_penalties(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """OpenAI presence/frequency penalties over generated tokens and HF's repetition
    penalty over prompt + generated tokens; rows without penalties are untouched."""
    rows = [i for i, s in enumerate(seqs) if s.params.has_penalties]
    if not rows:
        return logits
    logits = logits.clone()
    vocab = logits.shape[-1]
    sub = logits[rows]
    out_counts = _token_counts([seqs[i].output_token_ids for i in rows], vocab, logits.device)
    seen = _token_counts([seqs[i].token_ids for i in rows], vocab, logits.device) > 0
    p = [seqs[i].params for i in rows]
    rep = torch.tensor([x.repetition_penalty for x in p], device=logits.device).unsqueeze(1)
    rep = torch.where(seen, rep, torch.ones_like(rep))
    sub = torch.where(sub > 0, sub / rep, sub * rep)
    freq = torch.tensor([x.frequency_penalty for x in p], device=logits.device).unsqueeze(1)
    pres = torch.tensor([x.presence_penalty for x in p], device=logits.device).unsqueeze(1)
    sub = sub - freq * out_counts - pres * (out_counts > 0).float()
    logits[rows] = sub
    return logits


def _token_counts(token_lists: list[list[int]], vocab: int, device: torch.device) -> torch.Tensor:
    width = max((len(t) for t in token_lists), default=0)
    # Padding points at an extra column that is dropped afterwards.
    idx = torch.full((len(token_lists), width), vocab, dtype=torch.long)
    for row, toks in enumerate(token_lists):
        idx[row, : len(toks)] = torch.tensor(toks, dtype=torch.long)
    counts = torch.zeros(len(token_lists), vocab + 1, device=device)
    counts.scatter_add_(1, idx.to(device), torch.ones(idx.shape, device=device))
    return counts[:, :vocab]


def filtered_probs(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """Temperature, then top-k, top-p and min-p; returns each row's sampling distribution."""
    device = logits.device
    temps = torch.tensor([p.temperature for p in params], device=device).unsqueeze(1)
    logits = logits / temps
    vocab = logits.shape[-1]
    top_k = [p.top_k if 0 < p.top_k < vocab else vocab for p in params]
    top_p = [p.top_p for p in params]
    if any(k < vocab for k in top_k) or any(x < 1.0 for x in top_p):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        ranks = torch.arange(vocab, device=device).unsqueeze(0)
        beyond_k = ranks >= torch.tensor(top_k, device=device).unsqueeze(1)
        sorted_logits = sorted_logits.masked_fill(beyond_k, float("-inf"))
        sorted_probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the more likely ones already reach top_p (the first always stays).
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        beyond_p = before >= torch.tensor(top_p, device=device).unsqueeze(1)
        beyond_p[:, 0] = False
        sorted_logits = sorted_logits.masked_fill(beyond_p, float("-inf"))
        logits = torch.empty_like(logits).scatter_(1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    min_p = [p.min_p for p in params]
    if any(x > 0.0 for x in min_p):
        floor = (
            torch.tensor(min_p, device=device).unsqueeze(1) * probs.max(dim=-1, keepdim=True).values
        )
        probs = probs.masked_fill(probs < floor, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs
