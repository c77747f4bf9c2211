"""The persistent batch's sampling side: per-request state as device tensors, by slot.

A running sequence holds a slot (a row) for as long as it runs. Its settings, seed, count
of generated tokens, last sampled token and (when it uses them) its token counts, prompt
mask, logit bias and min_tokens stop mask live in rows of tensors on the device. They are
written once when the sequence takes the slot and then updated in place by the sampler
(one scatter per step for the whole batch), never rebuilt from Python lists. A step only
sends the slot ids of its rows; every per-row value is a gather from these tensors.

The [slots, vocab] tensors exist only once a request needs them (penalties, logit_bias,
min_tokens), so a deployment that never uses them never pays for them.

Thread safety: `allocate`/`release` are host bookkeeping (the scheduling thread);
`write_slot` and everything the sampler does run on the device thread, in step order, so a
slot freed during step N and reused in N+2 is rewritten only after N+1 used the old row.
"""

from __future__ import annotations

import random

import torch

from infleet.engine.messages import SamplingParams

# Columns of the float settings table.
TEMPERATURE, TOP_K, TOP_P, MIN_P, PRESENCE, FREQUENCY, REPETITION = range(7)
# Columns of the int64 table.
SEED, GENERATED, MIN_TOKENS, LAST_TOKEN = range(4)


def request_seed(params: SamplingParams, index: int) -> int:
    """The seed a choice draws from: the request's (choice i gets seed + i) or a random one."""
    if params.seed is None:
        return random.SystemRandom().getrandbits(62)
    return (params.seed + index) % (1 << 62)


class SamplingState:
    def __init__(self, max_slots: int, vocab_size: int, device: torch.device):
        self.max_slots, self.vocab_size, self.device = max_slots, vocab_size, device
        self.floats = torch.zeros(max_slots, 7, device=device)
        self.ints = torch.zeros(max_slots, 4, dtype=torch.int64, device=device)
        self._free = list(range(max_slots - 1, -1, -1))
        self._last_and_generated = torch.tensor([LAST_TOKEN, GENERATED], device=device)
        # Allocated on first use (see the module docstring).
        self.counts: torch.Tensor | None = None  # int32: output tokens generated, per id
        self.prompt_seen: torch.Tensor | None = None  # bool: ids in the prompt
        self.bias: torch.Tensor | None = None  # float32: logit_bias
        self.stop_mask: torch.Tensor | None = None  # bool: ids masked before min_tokens

    # -- host bookkeeping (scheduling thread) ------------------------------------------

    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        return self._free.pop()

    def release(self, slot: int) -> None:
        self._free.append(slot)

    # -- device thread ----------------------------------------------------------------

    def write_slot(
        self,
        slot: int,
        params: SamplingParams,
        seed: int,
        prompt_ids: list[int],
        output_ids: list[int],
        stop_ids: list[int],
    ) -> None:
        """(Re)initialise a slot for a sequence: settings, and the state its tokens so far
        imply (a sequence readmitted after preemption continues where it was)."""
        vocab, dev = self.vocab_size, self.device
        top_k = params.top_k if 0 < params.top_k < vocab else 0
        self.floats[slot] = torch.tensor(
            [
                params.temperature, top_k, params.top_p, params.min_p,
                params.presence_penalty, params.frequency_penalty, params.repetition_penalty,
            ]
        )  # fmt: skip
        last = output_ids[-1] if output_ids else prompt_ids[-1]
        self.ints[slot] = torch.tensor([seed, len(output_ids), params.min_tokens, last])
        if params.has_penalties or self.counts is not None:
            counts, seen = self._penalty_tables()
            counts[slot] = torch.bincount(
                torch.tensor(output_ids, dtype=torch.long), minlength=vocab
            ).to(dev, torch.int32)
            seen[slot] = (
                torch.bincount(torch.tensor(prompt_ids, dtype=torch.long), minlength=vocab).to(dev)
                > 0
            )
        if params.logit_bias or self.bias is not None:
            bias = self._table("bias", torch.float32)
            bias[slot] = 0.0
            if params.logit_bias:
                ids = torch.tensor(list(params.logit_bias), dtype=torch.long)
                bias[slot, ids.to(dev)] = torch.tensor(list(params.logit_bias.values())).to(dev)
        if params.min_tokens > 0 or self.stop_mask is not None:
            mask = self._table("stop_mask", torch.bool)
            mask[slot] = False
            if params.min_tokens > 0 and stop_ids:
                mask[slot, torch.tensor(stop_ids, dtype=torch.long).to(dev)] = True

    def _penalty_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.counts is None or self.prompt_seen is None:
            self.counts = self._table("counts", torch.int32)
            self.prompt_seen = self._table("prompt_seen", torch.bool)
        return self.counts, self.prompt_seen

    def _table(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        table = getattr(self, name)
        if table is None:
            table = torch.zeros(self.max_slots, self.vocab_size, dtype=dtype, device=self.device)
            setattr(self, name, table)
        return table

    def record(self, slots: torch.Tensor, tokens: torch.Tensor) -> None:
        """After a sample: each row's token becomes its last token and is counted."""
        last = torch.stack([tokens, self.ints[slots, GENERATED] + 1], dim=1)
        self.ints.index_put_((slots.unsqueeze(1), self._last_and_generated), last)
        if self.counts is not None:
            self.counts.index_put_(
                (slots, tokens), torch.ones_like(tokens, dtype=torch.int32), accumulate=True
            )
